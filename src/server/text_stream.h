// TextStream: turns a request's generated token bytes into the text a client
// may be sent so far. Two things are held back: the tail of an unfinished
// UTF-8 sequence (a token can end mid-character), and a tail that could be
// the start of a stop string. When a stop string appears the text ends
// before it and the stream is stopped (the caller cancels the request).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace duet::server {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {}

  // Appends one token's bytes; returns the text that became safe to send.
  std::string push(std::string_view bytes);
  // At the end of generation: the text still held back (nothing after a stop).
  std::string flush();
  bool stopped() const { return stopped_; }
  // All text sent or returned so far, i.e. the completion.
  const std::string& text() const { return sent_; }

 private:
  std::vector<std::string> stop_;
  std::string pending_;  // received, not yet released
  std::string sent_;
  bool stopped_ = false;
};

}  // namespace duet::server
