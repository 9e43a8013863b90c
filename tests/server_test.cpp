// The server's parts without HTTP: the text stream (stop strings, split
// UTF-8), the OpenAI schema's validation, logprobs against token_log_prob,
// the batched CPU decode against the one-sequence forward pass (bitwise:
// the server's greedy outputs must not depend on the batch), and the engine
// loop (concurrent equals alone, chunked prefill, cancellation, a full queue).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "backends/cpu/cpu_model.h"
#include "eval/perplexity.h"
#include "model/loader.h"
#include "runtime/batch_decoder.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"
#include "server/engine.h"
#include "server/http_server.h"
#include "server/openai_schema.h"
#include "server/text_stream.h"
#include "test_support.h"

namespace duet {
namespace {

using server::EngineEvent;
using server::TextStream;

TEST(TextStream, StopStringAcrossTokensEndsTheText) {
  TextStream s({"STOP"});
  EXPECT_EQ(s.push("Hello S"), "Hello ");  // "S" could start "STOP": held back
  EXPECT_EQ(s.push("T"), "");
  EXPECT_EQ(s.push("OP and more"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "Hello ");
  EXPECT_EQ(s.push("ignored"), "");
}

TEST(TextStream, HeldBackPrefixIsReleasedWhenItDiverges) {
  TextStream s({"\n\n", "END"});
  EXPECT_EQ(s.push("a\n"), "a");
  EXPECT_EQ(s.push("b"), "\nb");
  EXPECT_EQ(s.push("EN"), "");
  EXPECT_EQ(s.flush(), "EN");
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.text(), "a\nbEN");
}

TEST(TextStream, EarliestStopWins) {
  TextStream s({"cd", "b"});
  EXPECT_EQ(s.push("abcd"), "a");
  EXPECT_TRUE(s.stopped());
}

TEST(TextStream, SplitUtf8IsHeldUntilComplete) {
  TextStream s({});
  // "é" is C3 A9 and "€" E2 82 AC: tokens can end inside them.
  EXPECT_EQ(s.push("caf\xC3"), "caf");
  EXPECT_EQ(s.push("\xA9 \xE2\x82"), "\xC3\xA9 ");
  EXPECT_EQ(s.push("\xAC"), "\xE2\x82\xAC");
  EXPECT_EQ(s.flush(), "");
}

TEST(OpenAiSchema, ParsesEveryPromptForm) {
  auto one = server::parse_completion_request(R"({"prompt": "hi", "max_tokens": 3, "stop": "x", "n": 2, "seed": 5})");
  ASSERT_TRUE(one.ok()) << one.message();
  EXPECT_EQ(one->prompts.size(), 1u);
  EXPECT_EQ(*one->max_tokens, 3);
  EXPECT_EQ(one->stop, std::vector<std::string>{"x"});
  EXPECT_EQ(one->n, 2);
  EXPECT_EQ(*one->seed, 5u);
  auto ids = server::parse_completion_request(R"({"prompt": [1, 2, 3], "echo": true, "logprobs": 1})");
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->prompts.size(), 1u);
  EXPECT_TRUE(ids->prompts[0].is_tokens);
  EXPECT_EQ(ids->prompts[0].tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_TRUE(ids->echo);
  EXPECT_EQ(ids->logprobs, 1);
  auto lists = server::parse_completion_request(R"({"prompt": [[1, 2], "text", [3]]})");
  ASSERT_TRUE(lists.ok());
  EXPECT_EQ(lists->prompts.size(), 3u);
  auto chat = server::parse_chat_request(
      R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
          "logprobs": true, "top_logprobs": 2, "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(chat.ok()) << chat.message();
  EXPECT_EQ(chat->messages[0].content, "ab");
  EXPECT_EQ(chat->logprobs, 2);
  EXPECT_TRUE(chat->include_usage);
}

TEST(OpenAiSchema, RejectsBadRequestsNamingTheField) {
  struct Case {
    const char* body;
    const char* expected;
  };
  const Case cases[] = {
      {R"({"prompt": "hi)", "the request body: invalid JSON"},
      {R"([1, 2])", "must be a JSON object"},
      {R"({"max_tokens": 3})", "'prompt' is required"},
      {R"({"prompt": 5})", "'prompt' must be a string"},
      {R"({"prompt": []})", "an empty list"},
      {R"({"prompt": [1, -2]})", "non-negative"},
      {R"({"prompt": "x", "max_tokens": "ten"})", "'max_tokens' must be an integer"},
      {R"({"prompt": "x", "max_tokens": -1})", "'max_tokens' must be in"},
      {R"({"prompt": "x", "temperature": "hot"})", "'temperature' must be a number"},
      {R"({"prompt": "x", "top_p": 0})", "'top_p' must be in (0, 1]"},
      {R"({"prompt": "x", "n": 100})", "'n' must be in"},
      {R"({"prompt": "x", "n": 0})", "'n' must be in [1, "},
      {R"({"prompt": "x", "max_tokens": 18446744073709551615})", "'max_tokens' must be in"},
      {R"({"prompt": "x", "stop": ["a", 1]})", "'stop' must be"},
      {R"({"prompt": "x", "stop": ""})", "must not be empty"},
      {R"({"prompt": "x", "logprobs": 50})", "'logprobs' must be in"},
      {R"({"prompt": "x", "stream": "yes"})", "'stream' must be a boolean"},
      {R"({"prompt": "x", "model": 3})", "'model' must be a string"},
  };
  for (const Case& c : cases) {
    auto r = server::parse_completion_request(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_NE(r.message().find(c.expected), std::string::npos) << c.body << " -> " << r.message();
  }
  // Nested past parse_json_input's limit: an error, not a stack overflow while naming the wrong type (fuzz/request_fuzz.cpp).
  const std::string deep = "{\"prompt\": " + std::string(200000, '[') + std::string(200000, ']') + "}";
  auto r = server::parse_completion_request(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("nested deeper than"), std::string::npos) << r.message();
  // Invalid UTF-8 where the parser stops: the message quotes it as '?', so the error body carries it unchanged.
  auto bad_bytes = server::parse_completion_request("{\"prompt\": [[4, 5], [6]\xa8\xd3\xdf\xdd}");
  ASSERT_FALSE(bad_bytes.ok());
  for (char c : bad_bytes.message()) EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << bad_bytes.message();
  EXPECT_FALSE(server::parse_chat_request(R"({"messages": []})").ok());
  EXPECT_FALSE(server::parse_chat_request(R"({"messages": [{"content": "no role"}]})").ok());
  EXPECT_FALSE(server::parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})").ok());
}

TEST(Logprobs, EqualTokenLogProbAndSortTheTop) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  const LogprobEntry e = logprob_entry(logits.data(), 5, 4, 3);
  EXPECT_EQ(e.chosen.logprob, static_cast<float>(token_log_prob(logits.data(), 5, 4)));
  ASSERT_EQ(e.top.size(), 3u);
  EXPECT_EQ(e.top[0].token, 1);  // tie with 3: lower id first
  EXPECT_EQ(e.top[1].token, 3);
  EXPECT_EQ(e.top[2].token, 0);
  for (const TokenLogprob& t : e.top) EXPECT_EQ(t.logprob, static_cast<float>(token_log_prob(logits.data(), 5, t.token)));
}

const ModelWeights& smollm2() {
  static const ModelWeights weights = [] {
    auto w = load_weights(test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf"));
    if (!w.ok()) throw std::runtime_error(w.message());
    return std::move(w).value();
  }();
  return weights;
}

// The server decodes through decode_batch; `duet run`, `duet eval` and the
// single-sequence Decoder through forward. Both must give the same bits, in
// any batch, for the server to answer as a request sent alone would.
TEST(CpuDecodeBatch, EqualsForwardBitwiseInAnyBatch) {
  const ModelWeights& w = smollm2();
  CpuModel model(w, 64);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {42}, {100, 200, 300}};
  std::vector<KvCache> alone, batched;
  std::vector<float> logits;
  for (const auto& p : prompts) {
    alone.push_back(model.new_cache(64));
    batched.push_back(model.new_cache(64));
    ASSERT_TRUE(model.forward(p.data(), static_cast<int>(p.size()), alone.back(), LogitsMode::Last, logits).ok());
    ASSERT_TRUE(model.forward(p.data(), static_cast<int>(p.size()), batched.back(), LogitsMode::Last, logits).ok());
  }
  const int V = w.config.vocab_size;
  for (int step = 0; step < 3; ++step) {
    const std::vector<int32_t> next = {int32_t(500 + step), int32_t(600 + step), int32_t(700 + step)};
    std::vector<KvCache*> caches = {&batched[0], &batched[1], &batched[2]};
    std::vector<float> batch_logits;
    ASSERT_TRUE(model.decode_batch(next.data(), 3, caches.data(), batch_logits).ok());
    for (int b = 0; b < 3; ++b) {
      std::vector<float> one;
      ASSERT_TRUE(model.forward(&next[b], 1, alone[b], LogitsMode::Last, one).ok());
      ASSERT_EQ(std::vector<float>(batch_logits.begin() + b * V, batch_logits.begin() + (b + 1) * V), one)
          << "sequence " << b << " step " << step;
    }
  }
  KvCache full = model.new_cache(1);
  KvCache* full_ptr = &full;
  const int32_t token = 1;
  ASSERT_TRUE(model.decode_batch(&token, 1, &full_ptr, logits).ok());
  EXPECT_FALSE(model.decode_batch(&token, 1, &full_ptr, logits).ok());  // the cache holds one position
  const int32_t bad = V;
  KvCache other = model.new_cache(4);
  KvCache* other_ptr = &other;
  EXPECT_FALSE(model.decode_batch(&bad, 1, &other_ptr, logits).ok());
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<LogprobEntry> prompt_logprobs;
  server::FinishReason finish = server::FinishReason::kError;
  bool last_is_end = false;
  int logprob_tokens = 0;  // token events that carried logprobs
};

Outcome collect(server::RequestHandle& handle) {
  Outcome out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<EngineEvent> events;
    handle.wait_events(events, std::chrono::milliseconds(100));
    for (EngineEvent& e : events) {
      if (e.kind == EngineEvent::Kind::kToken) {
        out.tokens.push_back(e.token);
        out.last_is_end = e.end_of_generation;
        out.logprob_tokens += e.logprobs.top.empty() ? 0 : 1;
      }
      if (e.kind == EngineEvent::Kind::kPromptLogprobs) out.prompt_logprobs = e.prompt_logprobs;
      if (e.kind == EngineEvent::Kind::kFinished) {
        out.finish = e.finish;
        return out;
      }
    }
  }
  ADD_FAILURE() << "request did not finish in time";
  return out;
}

std::unique_ptr<server::Engine> make_engine(int slots, int prefill_chunk, int max_waiting = 64,
                                            std::vector<bool> end_tokens = {}) {
  const ModelWeights& w = smollm2();
  server::EngineOptions options;
  options.prefill_chunk = prefill_chunk;
  options.max_waiting = max_waiting;
  end_tokens.resize(w.config.vocab_size, false);
  return std::make_unique<server::Engine>(make_cpu_batch_decoder(w, slots, 128), std::move(end_tokens), options);
}

server::GenerationRequest greedy(std::vector<int32_t> prompt, int max_tokens) {
  server::GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  return r;
}

TEST(Engine, ConcurrentGreedyRequestsEqualThemAlone) {
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, {9000}, {300, 301, 302}, {5, 5, 5, 5, 5}, {1234, 4321}};
  std::vector<std::vector<int32_t>> alone;
  {
    auto engine = make_engine(1, 8);
    for (const auto& p : prompts) {
      auto handle = engine->submit(greedy(p, 6));
      ASSERT_TRUE(handle.ok());
      Outcome o = collect(**handle);
      EXPECT_EQ(o.finish, server::FinishReason::kLength);
      alone.push_back(o.tokens);
    }
  }
  auto engine = make_engine(3, 8);  // fewer slots than requests: some wait, then join a running batch
  std::vector<std::shared_ptr<server::RequestHandle>> handles;
  for (const auto& p : prompts) handles.push_back(engine->submit(greedy(p, 6)).value());
  for (size_t i = 0; i < prompts.size(); ++i) {
    Outcome o = collect(*handles[i]);
    EXPECT_EQ(o.tokens, alone[i]) << "prompt " << i;
    EXPECT_EQ(o.tokens.size(), 6u);
  }
  EXPECT_EQ(engine->metrics().kv_slots_used.load(), 0);
  EXPECT_EQ(engine->metrics().requests_finished_total.load(), prompts.size());
}

// Echo logprobs gathered over prompt chunks: the row that predicts a chunk's
// first token is the previous chunk's last one. One chunk vs chunks of 5.
TEST(Engine, ChunkedPrefillGivesThePromptLogprobsOfOneChunk) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 23; ++i) prompt.push_back(100 + 37 * i);
  auto request = greedy(prompt, 2);
  request.echo_logprobs = true;
  request.top_logprobs = 1;
  auto whole_engine = make_engine(1, 64);
  Outcome whole = collect(*whole_engine->submit(request).value());
  auto chunked_engine = make_engine(1, 5);
  Outcome chunked = collect(*chunked_engine->submit(request).value());
  ASSERT_EQ(whole.prompt_logprobs.size(), prompt.size() - 1);
  ASSERT_EQ(chunked.prompt_logprobs.size(), prompt.size() - 1);
  for (size_t t = 0; t < whole.prompt_logprobs.size(); ++t) {
    // Different GEMM shapes (T = 23 vs 5): equal up to float32 summation order.
    EXPECT_NEAR(chunked.prompt_logprobs[t].chosen.logprob, whole.prompt_logprobs[t].chosen.logprob, 2e-3) << t;
    EXPECT_EQ(chunked.prompt_logprobs[t].chosen.token, prompt[t + 1]);
  }
  EXPECT_EQ(chunked.tokens, whole.tokens);

  request.max_tokens = 0;  // score only
  Outcome scored = collect(*whole_engine->submit(request).value());
  EXPECT_TRUE(scored.tokens.empty());
  EXPECT_EQ(scored.prompt_logprobs.size(), prompt.size() - 1);
  EXPECT_EQ(scored.finish, server::FinishReason::kLength);
}

// An end token still comes out as a token event (lm-eval's echo scoring reads
// exactly max_tokens generated logprobs), marked, and ends the request.
TEST(Engine, EndTokenIsSentWithItsLogprobsAndStops) {
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  const int32_t first = collect(*make_engine(1, 64)->submit(greedy(prompt, 1)).value()).tokens.at(0);
  std::vector<bool> end(first + 1, false);
  end[first] = true;
  auto engine = make_engine(1, 64, 64, end);
  auto request = greedy(prompt, 5);
  request.top_logprobs = 1;
  request.echo_logprobs = true;
  Outcome o = collect(*engine->submit(request).value());
  EXPECT_EQ(o.tokens, std::vector<int32_t>{first});
  EXPECT_TRUE(o.last_is_end);
  EXPECT_EQ(o.logprob_tokens, 1);
  EXPECT_EQ(o.finish, server::FinishReason::kStop);
  request.stop_at_end_of_generation = false;  // ignore_eos
  Outcome ignored = collect(*engine->submit(request).value());
  EXPECT_EQ(ignored.tokens.size(), 5u);
  EXPECT_EQ(ignored.finish, server::FinishReason::kLength);
}

TEST(Engine, CancelFreesTheSlotAndAFullQueueRefuses) {
  auto engine = make_engine(1, 64, /*max_waiting=*/1);
  auto running = engine->submit(greedy({1, 2, 3}, 100)).value();
  // Wait until it holds the slot, so the next one queues.
  std::vector<EngineEvent> first;
  ASSERT_TRUE(running->wait_events(first, std::chrono::seconds(60)));
  auto queued = engine->submit(greedy({4, 5}, 2));
  ASSERT_TRUE(queued.ok());
  auto refused = engine->submit(greedy({6}, 2));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("busy"), std::string::npos);
  EXPECT_EQ(engine->metrics().requests_rejected_total.load(), 1u);

  running->cancel();
  Outcome cancelled = collect(*running);
  EXPECT_EQ(cancelled.finish, server::FinishReason::kCancelled);
  EXPECT_LT(cancelled.tokens.size(), 99u);
  Outcome next = collect(**queued);  // the freed slot serves the queued request
  EXPECT_EQ(next.finish, server::FinishReason::kLength);
  EXPECT_EQ(next.tokens.size(), 2u);
  EXPECT_EQ(engine->metrics().kv_slots_used.load(), 0);
  EXPECT_EQ(engine->metrics().requests_cancelled_total.load(), 1u);
}

// A burst of clients must reach the server while it is busy: the kernel completes their handshakes
// into the listen backlog. cpp-httplib's own backlog of 5 dropped the SYNs past it, and those clients
// waited a second to retry. Nothing accepts here (listen() is never called), so every connection
// that completes sits in the backlog.
TEST(HttpServer, ListenBacklogHoldsABurstOfClients) {
  server::ServerOptions options;
  options.port = 0;
  server::HttpServer http(options);
  ASSERT_TRUE(http.bind().ok());
  constexpr int kClients = 64;
  std::vector<pollfd> fds;
  for (int i = 0; i < kClients; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(http.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
    fds.push_back({fd, POLLOUT, 0});
  }
  // Completed handshakes are writable at once; one held in SYN_SENT would be retried only after 1 s.
  int connected = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (connected < kClients && std::chrono::steady_clock::now() < deadline) {
    poll(fds.data(), fds.size(), 50);
    connected = 0;
    for (const pollfd& p : fds) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if ((p.revents & POLLOUT) && err == 0) ++connected;
    }
  }
  for (const pollfd& p : fds) close(p.fd);
  EXPECT_EQ(connected, kClients);
}

}  // namespace
}  // namespace duet
