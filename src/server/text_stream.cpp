#include "server/text_stream.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace duet::server {
namespace {

// Bytes at the end of `s` that start a UTF-8 sequence not yet complete.
size_t incomplete_utf8_tail(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    const uint8_t c = static_cast<uint8_t>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t need = (c & 0x80) == 0 ? 1 : utf8_sequence_length(c);
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

std::string TextStream::push(std::string_view bytes) {
  if (stopped_) return "";
  pending_.append(bytes);
  // The earliest complete stop string ends the text.
  size_t cut = std::string::npos;
  for (const std::string& stop : stop_) {
    const size_t at = pending_.find(stop);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    sent_ += out;
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stop_) {
    for (size_t len = std::min(stop.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  size_t release = pending_.size() - hold;
  release -= incomplete_utf8_tail(pending_.substr(0, release));
  std::string out = pending_.substr(0, release);
  pending_.erase(0, release);
  sent_ += out;
  return out;
}

std::string TextStream::flush() {
  if (stopped_) return "";
  std::string out = std::move(pending_);
  pending_.clear();
  sent_ += out;
  return out;
}

}  // namespace duet::server
