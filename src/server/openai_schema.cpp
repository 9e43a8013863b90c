#include "server/openai_schema.h"

#include <nlohmann/json.hpp>

#include "io/json_input.h"

namespace duet::server {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Field readers: absent (or null) leaves `out` unchanged; a wrong type or range is an error.
Status read_bool(const json& body, const char* name, bool& out) {
  if (!body.contains(name) || body[name].is_null()) return ok_status();
  if (!body[name].is_boolean()) return make_error("'", name, "' must be a boolean, got ", body[name].type_name());
  out = body[name].get<bool>();
  return ok_status();
}

Status read_number(const json& body, const char* name, double lo, double hi, float& out) {
  if (!body.contains(name) || body[name].is_null()) return ok_status();
  if (!body[name].is_number()) return make_error("'", name, "' must be a number, got ", body[name].type_name());
  const double v = body[name].get<double>();
  if (!(v >= lo && v <= hi)) return make_error("'", name, "' must be in [", lo, ", ", hi, "], got ", v);
  out = static_cast<float>(v);
  return ok_status();
}

Status read_int(const json& body, const char* name, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
  if (!body.contains(name) || body[name].is_null()) return ok_status();
  const json& v = body[name];
  if (!v.is_number_integer()) return make_error("'", name, "' must be an integer, got ", v.type_name());
  // nlohmann reads non-negative integers as unsigned: compare those as unsigned (a huge one is out of range),
  // the rest as signed; both against lo as well (request_fuzz found "n": 0 accepted).
  const bool in_range = v.is_number_unsigned()
                            ? v.get<uint64_t>() <= static_cast<uint64_t>(hi) && static_cast<int64_t>(v.get<uint64_t>()) >= lo
                            : v.get<int64_t>() <= hi && v.get<int64_t>() >= lo;
  if (!in_range) {
    return make_error("'", name, "' must be in [", lo, ", ", hi, "], got ", v.dump());
  }
  out = v.get<int64_t>();
  return ok_status();
}

Status read_int(const json& body, const char* name, int64_t lo, int64_t hi, int& out) {
  std::optional<int64_t> v;
  DUET_TRY(read_int(body, name, lo, hi, v));
  if (v) out = static_cast<int>(*v);
  return ok_status();
}

Result<std::vector<int32_t>> token_list(const json& v) {
  std::vector<int32_t> tokens;
  for (const json& t : v) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX) {
      return make_error("'prompt' token ids must be non-negative integers, got ", t.dump());
    }
    tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return tokens;
}

Status read_prompts(const json& body, std::vector<PromptSpec>& prompts) {
  constexpr const char* kExpected =
      "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids";
  if (!body.contains("prompt")) return make_error("'prompt' is required");
  const json& p = body["prompt"];
  if (p.is_string()) {
    prompts.push_back({false, p.get<std::string>(), {}});
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    DUET_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, token_list(p));
    prompts.push_back({true, "", std::move(tokens)});
  } else if (p.is_array() && !p.empty()) {
    for (const json& item : p) {
      if (item.is_string()) {
        prompts.push_back({false, item.get<std::string>(), {}});
      } else if (item.is_array()) {
        DUET_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, token_list(item));
        prompts.push_back({true, "", std::move(tokens)});
      } else {
        return make_error(kExpected, "; got a list holding ", item.type_name());
      }
    }
  } else {
    return make_error(kExpected, "; got ", p.is_array() ? "an empty list" : p.type_name());
  }
  return ok_status();
}

Status read_messages(const json& body, std::vector<ChatMessage>& messages) {
  if (!body.contains("messages")) return make_error("'messages' is required");
  const json& m = body["messages"];
  if (!m.is_array() || m.empty()) return make_error("'messages' must be a non-empty list of {role, content} objects");
  for (size_t i = 0; i < m.size(); ++i) {
    const json& msg = m[i];
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string()) {
      return make_error("'messages[", i, "]' must be an object with a string 'role'");
    }
    ChatMessage out{msg["role"].get<std::string>(), ""};
    const json content = msg.value("content", json());
    if (content.is_string()) {
      out.content = content.get<std::string>();
    } else if (content.is_array()) {  // [{"type": "text", "text": "..."}]
      for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
          return make_error("'messages[", i, "].content' parts must be {\"type\": \"text\", \"text\": string}");
        }
        out.content += part["text"].get<std::string>();
      }
    } else if (!content.is_null()) {
      return make_error("'messages[", i, "].content' must be a string or a list of text parts, got ", content.type_name());
    }
    messages.push_back(std::move(out));
  }
  return ok_status();
}

Status read_common(const json& body, CompletionSpec& spec) {
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) return make_error("'model' must be a string, got ", body["model"].type_name());
    spec.model = body["model"].get<std::string>();
  }
  std::optional<int64_t> max_tokens;
  DUET_TRY(read_int(body, "max_tokens", 0, INT32_MAX, max_tokens));
  if (body.contains("max_completion_tokens")) DUET_TRY(read_int(body, "max_completion_tokens", 0, INT32_MAX, max_tokens));
  if (max_tokens) spec.max_tokens = static_cast<int>(*max_tokens);
  DUET_TRY(read_number(body, "temperature", 0.0, 100.0, spec.temperature));
  DUET_TRY(read_number(body, "top_p", 0.0, 1.0, spec.top_p));
  if (body.contains("top_p") && spec.top_p <= 0.0f) return make_error("'top_p' must be in (0, 1], got 0");
  DUET_TRY(read_int(body, "top_k", -1, INT32_MAX, spec.top_k));
  if (spec.top_k < 0) spec.top_k = 0;  // -1: no limit, as vLLM spells it
  std::optional<int64_t> seed;
  DUET_TRY(read_int(body, "seed", INT64_MIN, INT64_MAX, seed));
  if (seed) spec.seed = static_cast<uint64_t>(*seed);
  DUET_TRY(read_int(body, "n", 1, kMaxChoices, spec.n));
  DUET_TRY(read_bool(body, "stream", spec.stream));
  DUET_TRY(read_bool(body, "ignore_eos", spec.ignore_eos));
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    if (!body["stream_options"].is_object()) return make_error("'stream_options' must be an object");
    DUET_TRY(read_bool(body["stream_options"], "include_usage", spec.include_usage));
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      spec.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= kMaxStopStrings) {
      for (const json& s : stop) {
        if (!s.is_string()) return make_error("'stop' must be a string or a list of strings");
        spec.stop.push_back(s.get<std::string>());
      }
    } else {
      return make_error("'stop' must be a string or a list of at most ", kMaxStopStrings, " strings");
    }
    for (const std::string& s : spec.stop) {
      if (s.empty()) return make_error("'stop' strings must not be empty");
    }
  }
  return ok_status();
}

Result<json> parse_object(std::string_view body) {
  // Depth-limited: the error messages dump parts of the body, which recurses once per nesting level.
  DUET_ASSIGN_OR_RETURN(json j, parse_json_input("the request body", body));
  if (!j.is_object()) return make_error("the request body must be a JSON object, got ", j.type_name());
  return j;
}

json logprobs_completion(const std::vector<LogprobToken>& tokens) {
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  size_t offset = 0;
  for (const LogprobToken& t : tokens) {
    out["tokens"].push_back(t.text);
    out["text_offset"].push_back(offset);
    offset += t.text.size();
    if (!t.logprob) {
      out["token_logprobs"].push_back(nullptr);
      out["top_logprobs"].push_back(nullptr);
      continue;
    }
    // float -> double is exact, so a client summing these gets what `duet eval` sums.
    out["token_logprobs"].push_back(static_cast<double>(*t.logprob));
    json top = json::object();
    for (const auto& [text, lp] : t.top) {
      if (!top.contains(text)) top[text] = static_cast<double>(lp);
    }
    out["top_logprobs"].push_back(std::move(top));
  }
  return out;
}

json bytes_of(const std::string& s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

json logprobs_chat(const std::vector<LogprobToken>& tokens) {
  json content = json::array();
  for (const LogprobToken& t : tokens) {
    json top = json::array();
    for (const auto& [text, lp] : t.top) {
      top.push_back({{"token", text}, {"logprob", static_cast<double>(lp)}, {"bytes", bytes_of(text)}});
    }
    content.push_back({{"token", t.text},
                       {"logprob", static_cast<double>(t.logprob.value_or(0.0f))},
                       {"bytes", bytes_of(t.text)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

json finish_json(const Choice& c) { return c.finish_reason ? json(*c.finish_reason) : json(nullptr); }

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json header_json(const ResponseHeader& h, const char* object) {
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

}  // namespace

Result<CompletionSpec> parse_completion_request(std::string_view body) {
  DUET_ASSIGN_OR_RETURN(json j, parse_object(body));
  CompletionSpec spec;
  DUET_TRY(read_prompts(j, spec.prompts));
  DUET_TRY(read_common(j, spec));
  DUET_TRY(read_bool(j, "echo", spec.echo));
  DUET_TRY(read_int(j, "logprobs", 0, kMaxLogprobs, spec.logprobs));
  return spec;
}

Result<CompletionSpec> parse_chat_request(std::string_view body) {
  DUET_ASSIGN_OR_RETURN(json j, parse_object(body));
  CompletionSpec spec;
  DUET_TRY(read_messages(j, spec.messages));
  DUET_TRY(read_common(j, spec));
  bool logprobs = false;
  DUET_TRY(read_bool(j, "logprobs", logprobs));
  int top = 0;
  DUET_TRY(read_int(j, "top_logprobs", 0, kMaxLogprobs, top));
  if (j.contains("top_logprobs") && !j["top_logprobs"].is_null() && !logprobs) {
    return make_error("'top_logprobs' needs 'logprobs': true");
  }
  spec.logprobs = logprobs ? top : -1;
  return spec;
}

std::string completion_response(const ResponseHeader& header, const std::vector<Choice>& choices, const Usage& usage) {
  json out = header_json(header, "text_completion");
  out["choices"] = json::array();
  for (const Choice& c : choices) {
    out["choices"].push_back({{"index", c.index},
                              {"text", c.text},
                              {"logprobs", c.logprobs ? logprobs_completion(*c.logprobs) : json(nullptr)},
                              {"finish_reason", finish_json(c)}});
  }
  out["usage"] = usage_json(usage);
  return dump(out);
}

std::string chat_response(const ResponseHeader& header, const std::vector<Choice>& choices, const Usage& usage) {
  json out = header_json(header, "chat.completion");
  out["choices"] = json::array();
  for (const Choice& c : choices) {
    out["choices"].push_back({{"index", c.index},
                              {"message", {{"role", "assistant"}, {"content", c.text}}},
                              {"logprobs", c.logprobs ? logprobs_chat(*c.logprobs) : json(nullptr)},
                              {"finish_reason", finish_json(c)}});
  }
  out["usage"] = usage_json(usage);
  return dump(out);
}

std::string completion_chunk(const ResponseHeader& header, const Choice& c) {
  json out = header_json(header, "text_completion");
  out["choices"] = json::array({{{"index", c.index},
                                 {"text", c.text},
                                 {"logprobs", c.logprobs ? logprobs_completion(*c.logprobs) : json(nullptr)},
                                 {"finish_reason", finish_json(c)}}});
  return dump(out);
}

std::string chat_chunk(const ResponseHeader& header, const Choice& c, bool first) {
  json out = header_json(header, "chat.completion.chunk");
  json delta = json::object();
  if (first) delta["role"] = "assistant";
  if (!c.text.empty() || !c.finish_reason) delta["content"] = c.text;
  out["choices"] = json::array({{{"index", c.index},
                                 {"delta", std::move(delta)},
                                 {"logprobs", c.logprobs ? logprobs_chat(*c.logprobs) : json(nullptr)},
                                 {"finish_reason", finish_json(c)}}});
  return dump(out);
}

std::string usage_chunk(const ResponseHeader& header, bool chat, const Usage& usage) {
  json out = header_json(header, chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = usage_json(usage);
  return dump(out);
}

std::string error_body(const std::string& message, const std::string& type, int code) {
  return dump({{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}});
}

}  // namespace duet::server
