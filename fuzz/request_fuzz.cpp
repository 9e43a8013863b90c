// libFuzzer target for the server's request bodies (server/openai_schema.h):
// the first byte picks /v1/completions or /v1/chat/completions, the rest is the body.
//
// A rejected body gets one non-empty line, and the OpenAI error object made
// from it is valid JSON that carries it unchanged. An accepted body is inside
// the ranges the engine relies on (choices, logprobs, stop strings, sampling
// parameters, a prompt or messages present), and the response and stream
// chunks rendered from it parse back as JSON holding the same texts: whatever
// bytes a prompt carries, the server answers with well-formed JSON.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/check.h"
#include "server/openai_schema.h"

namespace {

using duet::server::Choice;
using duet::server::CompletionSpec;
using nlohmann::json;

void check_spec(const CompletionSpec& spec, bool chat) {
  DUET_CHECK(chat ? !spec.messages.empty() : !spec.prompts.empty());
  DUET_CHECK(spec.n >= 1 && spec.n <= duet::server::kMaxChoices);
  DUET_CHECK(spec.logprobs >= -1 && spec.logprobs <= duet::server::kMaxLogprobs);
  DUET_CHECK(spec.stop.size() <= static_cast<size_t>(duet::server::kMaxStopStrings));
  for (const std::string& s : spec.stop) DUET_CHECK(!s.empty());
  DUET_CHECK(std::isfinite(spec.temperature) && spec.temperature >= 0.0f);
  DUET_CHECK(spec.top_p > 0.0f && spec.top_p <= 1.0f);
  DUET_CHECK(spec.top_k >= 0);
  DUET_CHECK(!spec.max_tokens || *spec.max_tokens >= 0);
  for (const auto& p : spec.prompts) {
    for (int32_t t : p.tokens) DUET_CHECK(t >= 0);
  }
}

// The texts a response would carry back: the prompt's (completions under echo) or a message's.
std::string sample_text(const CompletionSpec& spec, bool chat) {
  if (chat) return spec.messages.front().content;
  return spec.prompts.front().text;
}

void check_rendering(const CompletionSpec& spec, bool chat) {
  const duet::server::ResponseHeader header{"cmpl-fuzz", 1, spec.model};
  Choice choice;
  choice.text = sample_text(spec, chat);
  choice.finish_reason = "stop";
  choice.logprobs = std::vector<duet::server::LogprobToken>{{choice.text, -0.5f, {{choice.text, -0.5f}, {"x", -1.0f}}}};
  const duet::server::Usage usage{3, 1};
  const std::string body = chat ? duet::server::chat_response(header, {choice}, usage)
                                : duet::server::completion_response(header, {choice}, usage);
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  DUET_CHECK(j.is_object());
  // The request's JSON strings are valid UTF-8, so they come back unchanged.
  const json& c = j["choices"][0];
  DUET_CHECK((chat ? c["message"]["content"] : c["text"]) == choice.text);
  DUET_CHECK(j["model"] == spec.model);
  const std::string chunk = chat ? duet::server::chat_chunk(header, choice, true)
                                 : duet::server::completion_chunk(header, choice);
  DUET_CHECK(json::accept(chunk));
  DUET_CHECK(json::accept(duet::server::usage_chunk(header, chat, usage)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool chat = data[0] & 1;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto spec = chat ? duet::server::parse_chat_request(body) : duet::server::parse_completion_request(body);
  if (!spec.ok()) {
    const std::string& message = spec.message();
    DUET_CHECK(!message.empty() && message.find('\n') == std::string::npos);
    const json error = json::parse(duet::server::error_body(message, "invalid_request_error", 400), nullptr, false);
    DUET_CHECK(error.is_object() && error["error"]["message"] == message);
    return 0;
  }
  check_spec(*spec, chat);
  check_rendering(*spec, chat);
  return 0;
}
