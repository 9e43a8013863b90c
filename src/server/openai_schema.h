// The OpenAI wire format: request bodies of /v1/completions and
// /v1/chat/completions parsed and validated into plain structs, and
// responses, stream chunks and error objects rendered back to JSON. The only
// file of the server that knows field names; the engine never sees JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"
#include "tokenizer/chat_template.h"

namespace duet::server {

// One prompt of a completions request: text, or token ids as sent.
struct PromptSpec {
  bool is_tokens = false;
  std::string text;
  std::vector<int32_t> tokens;
};

// A completions or chat request after validation (ranges checked, defaults filled in).
struct CompletionSpec {
  std::string model;                  // "" when absent
  std::vector<PromptSpec> prompts;    // completions: one choice set per prompt
  std::vector<ChatMessage> messages;  // chat
  std::optional<int> max_tokens;      // absent: the command's default
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;  // 0: no limit
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int n = 1;
  int logprobs = -1;  // alternatives per token; -1: no logprobs
  bool echo = false;  // completions: return the prompt (and its logprobs) before the completion
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;
};

inline constexpr int kMaxLogprobs = 20;
inline constexpr int kMaxChoices = 16;
inline constexpr int kMaxStopStrings = 4;

// Error messages name the field and what was expected; every error is a 400.
Result<CompletionSpec> parse_completion_request(std::string_view body);
Result<CompletionSpec> parse_chat_request(std::string_view body);

// One token in a logprobs listing.
struct LogprobToken {
  std::string text;
  std::optional<float> logprob;  // absent for the first prompt token (nothing predicts it)
  std::vector<std::pair<std::string, float>> top;
};

struct Choice {
  int index = 0;
  std::string text;  // completion text (with the prompt first under echo); a delta in a chunk
  std::optional<std::vector<LogprobToken>> logprobs;
  std::optional<std::string> finish_reason;  // "stop" or "length"; absent while streaming
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

struct ResponseHeader {
  std::string id;
  int64_t created = 0;
  std::string model;
};

std::string completion_response(const ResponseHeader& header, const std::vector<Choice>& choices, const Usage& usage);
std::string chat_response(const ResponseHeader& header, const std::vector<Choice>& choices, const Usage& usage);
// Stream chunks (the JSON after "data: "). A chat chunk's delta carries the role when `first`.
std::string completion_chunk(const ResponseHeader& header, const Choice& choice);
std::string chat_chunk(const ResponseHeader& header, const Choice& choice, bool first);
// The final chunk of stream_options.include_usage: no choices, the usage.
std::string usage_chunk(const ResponseHeader& header, bool chat, const Usage& usage);

// {"error": {"message", "type", "param": null, "code"}}.
std::string error_body(const std::string& message, const std::string& type, int code);

}  // namespace duet::server
