#include "server/http_server.h"

#include <httplib.h>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "server/connection_probe.h"
#include "server/openai_schema.h"
#include "server/text_stream.h"

namespace duet::server {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// How long a handler waits for engine events before it checks its client again.
constexpr auto kEventWait = 50ms;
constexpr size_t kMaxBodyBytes = size_t(16) << 20;
constexpr int kListenBacklog = 1024;  // pending connections the kernel holds for accept()

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const char* error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

void send_error(httplib::Response& res, int status, const std::string& message, Engine* engine) {
  if (engine && status >= 400 && status < 500) engine->metrics().http_client_errors_total++;
  res.status = status;
  res.set_content(error_body(message, error_type(status), status), "application/json");
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%08llx%06llx", prefix, static_cast<unsigned long long>(salt & 0xffffffff),
                static_cast<unsigned long long>(++counter));
  return buf;
}

// What a generation request is served with.
struct GenerationContext {
  Engine& engine;
  const Tokenizer& tokenizer;
  const std::string& model_id;
  const std::string& model_path;
};

// One choice of a request in flight: its engine handle and what it has produced.
struct ChoiceState {
  int index = 0;
  std::shared_ptr<RequestHandle> handle;
  std::vector<int32_t> prompt;
  std::string prompt_text;  // echo
  TextStream text;
  std::vector<LogprobToken> logprobs;  // non-streaming: everything so far
  int completion_tokens = 0;
  bool finished = false;
  std::string finish_reason;
  std::string error;
  bool sent_first = false;  // streaming: the role / echo chunk went out

  explicit ChoiceState(std::vector<std::string> stop) : text(std::move(stop)) {}
};

LogprobToken to_logprob_token(const Tokenizer& tok, int32_t token, const LogprobEntry& e) {
  LogprobToken out{tok.token_text(token), e.chosen.logprob, {}};
  for (const TokenLogprob& t : e.top) out.top.emplace_back(tok.token_text(t.token), t.logprob);
  return out;
}

// Applies one engine event to a choice: appends the new text to `delta` and the new logprob tokens to `lp`.
void apply_event(ChoiceState& c, EngineEvent& e, const Tokenizer& tok, bool logprobs, std::string& delta,
                 std::vector<LogprobToken>& lp) {
  if (c.finished) return;
  switch (e.kind) {
    case EngineEvent::Kind::kPromptLogprobs:
      if (!logprobs) return;
      lp.push_back({tok.token_text(c.prompt[0]), std::nullopt, {}});
      for (size_t t = 0; t < e.prompt_logprobs.size(); ++t) {
        lp.push_back(to_logprob_token(tok, c.prompt[t + 1], e.prompt_logprobs[t]));
      }
      return;
    case EngineEvent::Kind::kToken:
      ++c.completion_tokens;
      if (!e.end_of_generation) delta += c.text.push(tok.token_text(e.token));
      if (logprobs) lp.push_back(to_logprob_token(tok, e.token, e.logprobs));
      if (c.text.stopped()) {  // a stop string: the engine may free the slot now
        c.handle->cancel();
        c.finished = true;
        c.finish_reason = "stop";
      }
      return;
    case EngineEvent::Kind::kFinished:
      c.finished = true;
      delta += c.text.flush();
      c.finish_reason = e.finish == FinishReason::kLength ? "length" : "stop";
      if (e.finish == FinishReason::kError) c.error = e.error;
      if (e.finish == FinishReason::kCancelled) c.error = "the request was cancelled (server shutting down)";
      return;
  }
}

// Waits for events of the unfinished choices (up to kEventWait for the first) and applies them.
// Returns true when any event came.
struct Progress {
  std::string delta;
  std::vector<LogprobToken> logprobs;
  bool finished_now = false;
};
bool pump(std::vector<std::unique_ptr<ChoiceState>>& choices, const Tokenizer& tok, bool logprobs,
          std::vector<Progress>& progress) {
  bool any = false, waited = false;
  progress.assign(choices.size(), {});
  for (size_t i = 0; i < choices.size(); ++i) {
    ChoiceState& c = *choices[i];
    if (c.finished) continue;
    std::vector<EngineEvent> events;
    const bool got = c.handle->wait_events(events, waited ? 0ms : kEventWait);
    waited = true;
    if (!got) continue;
    any = true;
    for (EngineEvent& e : events) apply_event(c, e, tok, logprobs, progress[i].delta, progress[i].logprobs);
    progress[i].finished_now = c.finished;
  }
  return any;
}

bool all_finished(const std::vector<std::unique_ptr<ChoiceState>>& choices) {
  for (const auto& c : choices) {
    if (!c->finished) return false;
  }
  return true;
}

void cancel_all(const std::vector<std::unique_ptr<ChoiceState>>& choices) {
  for (const auto& c : choices) {
    if (c->handle) c->handle->cancel();
  }
}

Usage usage_of(const std::vector<std::unique_ptr<ChoiceState>>& choices, int n) {
  Usage u;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i % n == 0) u.prompt_tokens += static_cast<int>(choices[i]->prompt.size());
    u.completion_tokens += choices[i]->completion_tokens;
  }
  return u;
}

// The prompts of a request as token ids, with the text echo repeats and each one's max_tokens.
struct Prompts {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::string> texts;
  std::vector<int> max_tokens;
};

// Tokenizes (completions: as given; chat: through the chat template) and checks every prompt against the context.
Result<Prompts> prepare_prompts(const CompletionSpec& spec, const Tokenizer& tok, bool chat, int capacity) {
  Prompts out;
  if (chat) {
    DUET_ASSIGN_OR_RETURN(std::string text, tok.apply_chat_template(spec.messages, true));
    out.tokens.push_back(tok.encode(text, tok.add_bos_default(), true));
    out.texts.push_back(std::move(text));
  } else {
    for (const PromptSpec& p : spec.prompts) {
      if (p.is_tokens) {
        for (int32_t t : p.tokens) {
          if (t >= tok.vocab_size()) {
            return make_error("prompt token id ", t, " is outside the vocabulary [0, ", tok.vocab_size(), ")");
          }
        }
        out.tokens.push_back(p.tokens);
        out.texts.push_back(spec.echo ? tok.decode(p.tokens) : "");
      } else {
        out.tokens.push_back(tok.encode(p.text, tok.add_bos_default(), true));
        out.texts.push_back(p.text);
      }
    }
  }
  for (const auto& p : out.tokens) {
    const int n = static_cast<int>(p.size());
    if (n == 0) return make_error("the prompt is empty (no tokens to condition on)");
    // Completions default to 16 tokens (as OpenAI's); chat to the rest of the context.
    const int max_tokens = spec.max_tokens.value_or(chat ? capacity - n : 16);
    if (max_tokens == 0 && !spec.echo) return make_error("'max_tokens' must be at least 1");
    if (static_cast<int64_t>(n) + max_tokens > capacity || n >= capacity) {
      return make_error("this model's maximum context length is ", capacity, " tokens; the request needs ",
                        static_cast<int64_t>(n) + std::max(max_tokens, 0), " (", n, " in the prompt, ", max_tokens,
                        " for the completion); shorten the prompt or lower 'max_tokens'");
    }
    out.max_tokens.push_back(max_tokens);
  }
  return out;
}

// Submits n choices per prompt, each its own engine request. Error (queue full): nothing stays submitted.
Result<std::vector<std::unique_ptr<ChoiceState>>> submit_choices(Engine& engine, const CompletionSpec& spec,
                                                                 const Prompts& prompts) {
  std::vector<std::unique_ptr<ChoiceState>> choices;
  const uint64_t base_seed = spec.seed.value_or(std::random_device{}());
  for (size_t p = 0; p < prompts.tokens.size(); ++p) {
    for (int k = 0; k < spec.n; ++k) {
      GenerationRequest g;
      g.prompt = prompts.tokens[p];
      g.max_tokens = prompts.max_tokens[p];
      g.sampling.temperature = spec.temperature;
      g.sampling.top_k = spec.top_k;
      g.sampling.top_p = spec.top_p;
      g.sampling.seed = base_seed + choices.size();
      g.top_logprobs = spec.logprobs;
      g.echo_logprobs = spec.echo && spec.logprobs >= 0;
      g.stop_at_end_of_generation = !spec.ignore_eos;
      auto c = std::make_unique<ChoiceState>(spec.stop);
      c->index = static_cast<int>(choices.size());
      c->prompt = prompts.tokens[p];
      c->prompt_text = spec.echo ? prompts.texts[p] : "";
      Result<std::shared_ptr<RequestHandle>> handle = engine.submit(std::move(g));
      if (!handle.ok()) {
        cancel_all(choices);
        return handle.error();
      }
      c->handle = std::move(handle).value();
      choices.push_back(std::move(c));
    }
  }
  return Result<std::vector<std::unique_ptr<ChoiceState>>>(std::move(choices));
}

// Waits for every choice and answers with one JSON body (nothing when the client left).
void respond_whole(GenerationContext& ctx, std::vector<std::unique_ptr<ChoiceState>>& choices,
                   const CompletionSpec& spec, const ResponseHeader& header, bool chat, const ConnectionProbe& probe,
                   httplib::Response& res) {
  const bool logprobs = spec.logprobs >= 0;
  std::vector<Progress> progress;
  while (!all_finished(choices)) {
    pump(choices, ctx.tokenizer, logprobs, progress);
    for (size_t i = 0; i < choices.size(); ++i) {
      for (LogprobToken& t : progress[i].logprobs) choices[i]->logprobs.push_back(std::move(t));
    }
    if (probe.closed()) return cancel_all(choices);  // nobody to answer
  }
  std::vector<Choice> out;
  for (const auto& c : choices) {
    if (!c->error.empty()) return send_error(res, 500, c->error, &ctx.engine);
    Choice choice;
    choice.index = c->index;
    choice.text = c->prompt_text + c->text.text();
    if (logprobs) choice.logprobs = std::move(c->logprobs);
    choice.finish_reason = c->finish_reason;
    out.push_back(std::move(choice));
  }
  const Usage usage = usage_of(choices, spec.n);
  res.set_content(chat ? chat_response(header, out, usage) : completion_response(header, out, usage),
                  "application/json");
}

// Server-sent events: the role (chat) or the echoed prompt first, then a chunk per choice and step,
// finish reasons, the usage chunk if asked for, and "data: [DONE]". A failed write cancels the request.
void respond_stream(GenerationContext& ctx, std::vector<std::unique_ptr<ChoiceState>> choices,
                    const CompletionSpec& spec, const ResponseHeader& header, bool chat,
                    std::shared_ptr<ConnectionProbe> probe, httplib::Response& res) {
  struct Stream {
    std::vector<std::unique_ptr<ChoiceState>> choices;
    std::shared_ptr<ConnectionProbe> probe;
  };
  auto stream = std::make_shared<Stream>(Stream{std::move(choices), std::move(probe)});
  const bool logprobs = spec.logprobs >= 0, include_usage = spec.include_usage;
  const int n = spec.n;
  const Tokenizer* tok = &ctx.tokenizer;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [stream, header, chat, logprobs, include_usage, n, tok](size_t, httplib::DataSink& sink) -> bool {
        auto send = [&](const std::string& payload) {
          const std::string event = "data: " + payload + "\n\n";
          return sink.write(event.data(), event.size());
        };
        auto chunk = [&](const Choice& c, bool first) {
          return send(chat ? chat_chunk(header, c, first) : completion_chunk(header, c));
        };
        auto& choices = stream->choices;
        auto give_up = [&] {
          cancel_all(choices);
          return false;
        };
        for (auto& c : choices) {
          if (c->sent_first || (!chat && c->prompt_text.empty())) continue;
          c->sent_first = true;
          Choice first;
          first.index = c->index;
          first.text = c->prompt_text;
          if (!chunk(first, true)) return give_up();
        }
        std::vector<Progress> progress;
        const bool any = pump(choices, *tok, logprobs, progress);
        for (size_t i = 0; i < choices.size(); ++i) {
          ChoiceState& c = *choices[i];
          Progress& p = progress[i];
          if (p.delta.empty() && p.logprobs.empty() && !p.finished_now) continue;
          if (!c.error.empty()) {
            if (!send(error_body(c.error, "server_error", 500))) return give_up();
            continue;
          }
          Choice out;
          out.index = c.index;
          out.text = std::move(p.delta);
          if (logprobs && !p.logprobs.empty()) out.logprobs = std::move(p.logprobs);
          if (p.finished_now) out.finish_reason = c.finish_reason;
          if (!chunk(out, !c.sent_first)) return give_up();
          c.sent_first = true;
        }
        if (all_finished(choices)) {
          if (include_usage && !send(usage_chunk(header, chat, usage_of(choices, n)))) return false;
          const std::string end = "data: [DONE]\n\n";
          sink.write(end.data(), end.size());
          sink.done();
          return true;
        }
        if (!any && stream->probe->closed()) return give_up();
        return true;
      },
      [stream](bool) { cancel_all(stream->choices); });
}

void serve_generation(GenerationContext ctx, const httplib::Request& req, httplib::Response& res, bool chat) {
  Result<CompletionSpec> parsed = chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
  if (!parsed.ok()) return send_error(res, 400, parsed.message(), &ctx.engine);
  const CompletionSpec& spec = parsed.value();
  if (!spec.model.empty() && spec.model != ctx.model_id && spec.model != ctx.model_path) {
    return send_error(res, 404, str_cat("the model '", spec.model, "' does not exist; this server serves '", ctx.model_id,
                                        "'"), &ctx.engine);
  }
  Result<Prompts> prompts = prepare_prompts(spec, ctx.tokenizer, chat, ctx.engine.capacity());
  if (!prompts.ok()) return send_error(res, 400, prompts.message(), &ctx.engine);
  Result<std::vector<std::unique_ptr<ChoiceState>>> choices = submit_choices(ctx.engine, spec, prompts.value());
  if (!choices.ok()) return send_error(res, 429, choices.message(), &ctx.engine);
  const ResponseHeader header{new_id(chat ? "chatcmpl" : "cmpl"), static_cast<int64_t>(std::time(nullptr)),
                              ctx.model_id};
  auto probe = std::make_shared<ConnectionProbe>(req.remote_addr, req.remote_port);
  if (spec.stream) return respond_stream(ctx, std::move(choices).value(), spec, header, chat, probe, res);
  respond_whole(ctx, choices.value(), spec, header, chat, *probe, res);
}

}  // namespace

HttpServer::HttpServer(ServerOptions options) : options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  const int threads = options_.http_threads;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(kMaxBodyBytes);
  http_->set_keep_alive_timeout(2);
  http_->set_read_timeout(30);
  http_->set_write_timeout(30);
  http_->set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd_ = sock;  // the last socket created is the one that bound
  });
  add_routes();
}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::bind() {
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
    if (port_ <= 0) return make_error("cannot bind ", options_.host, " to a free port");
  } else {
    if (!http_->bind_to_port(options_.host, options_.port)) {
      return make_error("cannot bind ", options_.host, ":", options_.port, " (in use, or the host is not local)");
    }
    port_ = options_.port;
  }
  // cpp-httplib listens with a backlog of 5 (compiled into Debian's library): when 32 clients connect
  // at once, the SYNs past it are dropped and those clients retry a second later (seen as 1 s time to
  // first token at p99 on the GPU). Listening again on the bound socket raises it (Linux; capped by
  // net.core.somaxconn).
  if (listen_fd_ >= 0 && ::listen(listen_fd_, kListenBacklog) != 0) {
    return make_error("cannot listen on ", options_.host, ":", port_, ": ", std::strerror(errno));
  }
  return ok_status();
}

void HttpServer::listen() {
  listen_called_ = true;
  if (!stop_requested_) http_->listen_after_bind();
  listen_done_ = true;
}

void HttpServer::stop() {
  // cpp-httplib's stop() only ends a loop that is already running: wait for it to start.
  stop_requested_ = true;
  while (listen_called_ && !listen_done_ && !http_->is_running()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  http_->stop();
}

void HttpServer::attach(Engine* engine, const Tokenizer* tokenizer) {
  tokenizer_ = tokenizer;
  engine_.store(engine);
}

void HttpServer::add_routes() {
  httplib::Server& s = *http_;

  // Returns the engine when the model is loaded and the caller may use it, else answers the request.
  auto ready = [this](const httplib::Request& req, httplib::Response& res, bool needs_key) -> Engine* {
    Engine* engine = engine_.load();
    if (needs_key && !options_.api_key.empty() &&
        req.get_header_value("Authorization") != "Bearer " + options_.api_key) {
      send_error(res, 401, "invalid or missing API key (send 'Authorization: Bearer KEY')", engine);
      return nullptr;
    }
    if (!engine) send_error(res, 503, "the model is loading; retry when GET /health answers 200", nullptr);
    return engine;
  };

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (engine_.load()) {
      res.set_content(R"({"status":"ok"})", "application/json");
    } else {
      res.status = 503;
      res.set_content(R"({"status":"loading"})", "application/json");
    }
  });

  s.Get("/metrics", [ready](const httplib::Request& req, httplib::Response& res) {
    if (Engine* engine = ready(req, res, false)) res.set_content(engine->metrics().render(), "text/plain; version=0.0.4");
  });

  s.Get("/v1/models", [this, ready](const httplib::Request& req, httplib::Response& res) {
    Engine* engine = ready(req, res, true);
    if (!engine) return;
    json model = {{"id", options_.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "duet"},
                  {"max_model_len", engine->capacity()}};
    res.set_content(dump({{"object", "list"}, {"data", json::array({model})}}), "application/json");
  });

  s.Get("/tokenizer_info", [this, ready](const httplib::Request& req, httplib::Response& res) {
    Engine* engine = ready(req, res, true);
    if (!engine) return;
    const Tokenizer& tok = *tokenizer_;
    auto token_or_null = [&](int32_t id) { return id >= 0 ? json(tok.token_text(id)) : json(nullptr); };
    json info = {{"tokenizer_class", "duet"},
                 {"eos_token", token_or_null(tok.eos_id())},
                 {"bos_token", token_or_null(tok.bos_id())},
                 {"pad_token", nullptr},
                 {"add_bos_token", tok.add_bos_default()},
                 {"chat_template", tok.chat_template()},
                 {"model_max_length", engine->capacity()},
                 {"vocab_size", tok.vocab_size()}};
    res.set_content(dump(info), "application/json");
  });

  s.Post("/tokenize", [this, ready](const httplib::Request& req, httplib::Response& res) {
    Engine* engine = ready(req, res, true);
    if (!engine) return;
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return send_error(res, 400, "the request body is not a JSON object", engine);
    // vLLM names the text "prompt", llama-server "content".
    const char* field = body.contains("prompt") ? "prompt" : "content";
    if (!body.contains(field) || !body[field].is_string()) {
      return send_error(res, 400, "'prompt' (or 'content') must be a string", engine);
    }
    bool add_special = true;
    if (body.contains("add_special_tokens")) {
      if (!body["add_special_tokens"].is_boolean()) return send_error(res, 400, "'add_special_tokens' must be a boolean", engine);
      add_special = body["add_special_tokens"].get<bool>();
    }
    const std::vector<int32_t> tokens =
        tokenizer_->encode(body[field].get<std::string>(), add_special && tokenizer_->add_bos_default(), true);
    res.set_content(dump({{"tokens", tokens}, {"count", tokens.size()}, {"max_model_len", engine->capacity()}}),
                    "application/json");
  });

  s.Post("/detokenize", [this, ready](const httplib::Request& req, httplib::Response& res) {
    Engine* engine = ready(req, res, true);
    if (!engine) return;
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("tokens") || !body["tokens"].is_array()) {
      return send_error(res, 400, "'tokens' must be a list of token ids", engine);
    }
    std::vector<int32_t> tokens;
    for (const json& t : body["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tokenizer_->vocab_size()) {
        return send_error(res, 400, str_cat("'tokens' must be ids in [0, ", tokenizer_->vocab_size(), "), got ", t.dump()),
                          engine);
      }
      tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    const std::string text = tokenizer_->decode(tokens);
    res.set_content(dump({{"prompt", text}, {"content", text}}), "application/json");
  });

  auto generate = [this, ready](const httplib::Request& req, httplib::Response& res, bool chat) {
    if (Engine* engine = ready(req, res, true)) {
      serve_generation(GenerationContext{*engine, *tokenizer_, options_.model_id, options_.model_path}, req, res, chat);
    }
  };

  s.Post("/v1/completions", [generate](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
  s.Post("/v1/chat/completions",
         [generate](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
  // Also without the /v1 prefix, as llama-server and vLLM answer them.
  s.Post("/completions", [generate](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
  s.Post("/chat/completions", [generate](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });

  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string message = res.status == 404 ? str_cat("no route ", req.method, " ", req.path)
                                                  : str_cat("HTTP ", res.status, " for ", req.method, " ", req.path);
    send_error(res, res.status, message, engine_.load());
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(error_body(what, "server_error", 500), "application/json");
  });
}

}  // namespace duet::server
