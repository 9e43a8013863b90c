// Engine: the continuous-batching loop that owns the model.
//
// HTTP threads (or `duet chat`) submit GenerationRequests, already tokenized
// and validated, and read EngineEvents back from the RequestHandle that
// submit() returns. One thread runs the loop; each step it
//   1. ends requests whose handle was cancelled (client gone, stop string),
//      freeing their slot at once;
//   2. admits queued requests into free KV slots;
//   3. prefills at most `prefill_chunk` prompt tokens, oldest prompts first
//      (several short ones, or one chunk of a long one), so a long prompt
//      delays the decoding streams by one chunk per step rather than by its
//      whole length;
//   4. decodes one token for every generating slot in one batched step,
//      samples each with its own sampler and sends the tokens out.
// Events leave through a sender thread: the loop hands each step's events
// over at once and goes on to the next step while they are delivered (one
// wake-up per request: at concurrency 64 that is ~64 futex calls a step,
// several % of a GPU step of a small model).
// The queue is bounded: submit() fails when it is full (HTTP 429). Nothing
// here sees JSON; the OpenAI schema lives in openai_schema.h.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/result.h"
#include "runtime/batch_decoder.h"
#include "runtime/logprobs.h"
#include "runtime/sampler.h"
#include "server/metrics.h"

namespace duet::server {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 16;  // 0 only with echo_logprobs (score the prompt, generate nothing)
  SamplingParams sampling;
  int top_logprobs = -1;       // alternatives per token; -1: no logprobs at all
  bool echo_logprobs = false;  // also logprobs of prompt tokens 1.. (needs top_logprobs >= 0)
  bool stop_at_end_of_generation = true;
};

enum class FinishReason { kLength, kStop, kCancelled, kError };

struct EngineEvent {
  enum class Kind { kPromptLogprobs, kToken, kFinished };
  Kind kind = Kind::kToken;
  std::vector<LogprobEntry> prompt_logprobs;  // kPromptLogprobs: entry t-1 is about prompt token t
  int32_t token = 0;                          // kToken
  bool end_of_generation = false;             // kToken: an end token (no text; the request ends with kStop)
  LogprobEntry logprobs;                      // kToken, when logprobs were asked for
  FinishReason finish = FinishReason::kLength;  // kFinished
  std::string error;                            // kFinished with kError
};

// The link between one request's submitter and the engine loop.
class RequestHandle {
 public:
  explicit RequestHandle(GenerationRequest request);
  // Moves pending events into `out`; waits up to `timeout` when there are none.
  // Returns false when none came.
  bool wait_events(std::vector<EngineEvent>& out, std::chrono::milliseconds timeout);
  // Asks the engine to end the request and free its slot (idempotent).
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  const GenerationRequest& request() const { return request_; }

 private:
  friend class Engine;
  void push(EngineEvent event);

  const GenerationRequest request_;
  std::chrono::steady_clock::time_point queued_at_;
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<EngineEvent> events_;
};

struct EngineOptions {
  int max_waiting = 64;     // requests that may wait beyond the free slots; more are refused
  int prefill_chunk = 512;  // prompt tokens per engine step
};

class Engine {
 public:
  // Starts the loop thread. `is_end_of_generation` names the tokens that stop a request.
  Engine(std::unique_ptr<BatchDecoder> decoder, std::vector<bool> is_end_of_generation, const EngineOptions& options);
  ~Engine();  // stops the loop; requests still held end with kCancelled
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request (validated by the caller: prompt non-empty, fits capacity()).
  // Error when the queue is full.
  Result<std::shared_ptr<RequestHandle>> submit(GenerationRequest request);

  int slots() const { return slots_; }
  int capacity() const { return capacity_; }
  int vocab_size() const { return vocab_size_; }
  std::string device_name() const { return device_name_; }
  Metrics& metrics() { return metrics_; }

 private:
  struct Slot;
  void loop();
  void admit();
  void drop_cancelled();
  void prefill_step();
  // Runs the next n prompt tokens of slot s; the last chunk of a prompt also samples its first token.
  void prefill_tokens(int s, int n);
  void decode_step();
  // Sends `token`, sampled for `slot` from `row` (its whole row of logits, needed only for
  // logprobs; null otherwise), and ends the request when it is done.
  void emit_token(Slot& slot, int32_t token, const float* row);
  void finish(Slot& slot, FinishReason reason, const std::string& error = "");
  // Queues an event for its request (loop thread); flush() hands the queue to the sender thread,
  // which delivers events in the order they were posted.
  using Outgoing = std::pair<std::shared_ptr<RequestHandle>, EngineEvent>;
  void post(const std::shared_ptr<RequestHandle>& handle, EngineEvent event);
  void flush();
  void send_loop();

  std::unique_ptr<BatchDecoder> decoder_;
  const std::vector<bool> end_of_generation_;
  const EngineOptions options_;
  const int slots_, capacity_, vocab_size_;
  const std::string device_name_;
  Metrics metrics_;

  std::mutex mutex_;  // guards queue_ and stopping_
  std::condition_variable wake_;
  std::deque<std::shared_ptr<RequestHandle>> queue_;
  bool stopping_ = false;

  std::vector<std::unique_ptr<Slot>> slot_state_;  // loop thread only; null = free
  uint64_t admissions_ = 0;                        // admission order, for FIFO prefill
  DecodeSelection selection_;                      // decode_step's output, kept to reuse its buffers
  std::vector<Outgoing> outbox_;                   // loop thread

  std::mutex send_mutex_;  // guards sending_ and send_stop_
  std::condition_variable send_wake_;
  std::vector<Outgoing> sending_;
  bool send_stop_ = false;
  std::thread sender_;
  std::thread thread_;
};

}  // namespace duet::server
