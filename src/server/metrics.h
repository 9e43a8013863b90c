// Metrics: the server's counters and latency histograms, rendered as
// Prometheus text for GET /metrics. The engine loop and the HTTP threads
// update them concurrently: counters are atomics, histograms take a lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace duet::server {

// A Prometheus histogram over fixed bucket bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends the _bucket/_sum/_count lines of metric `name`.
  void render(const std::string& name, const std::string& help, std::string& out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // [bounds + 1], the last one is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct Metrics {
  Metrics();

  std::atomic<int64_t> requests_running{0};  // holding a KV slot
  std::atomic<int64_t> requests_waiting{0};  // queued for a slot
  std::atomic<int64_t> kv_slots_used{0};
  int64_t kv_slots_total = 0;
  std::atomic<uint64_t> prompt_tokens_total{0};
  std::atomic<uint64_t> generation_tokens_total{0};
  std::atomic<uint64_t> requests_finished_total{0};   // completed (length or stop)
  std::atomic<uint64_t> requests_cancelled_total{0};  // client went away or a stop string ended it early
  std::atomic<uint64_t> requests_rejected_total{0};   // queue full (429)
  std::atomic<uint64_t> requests_failed_total{0};     // engine error
  std::atomic<uint64_t> http_client_errors_total{0};  // 4xx answers
  // Where the engine loop's time goes (written by the loop thread only): the model calls' share of
  // busy time is what the device gets; the rest is scheduling, sampling and handing tokens out.
  std::atomic<uint64_t> engine_decode_steps_total{0};
  std::atomic<uint64_t> engine_decode_rows_total{0};      // sequences over those steps (/ steps = mean batch)
  std::atomic<double> engine_busy_seconds_total{0};      // loop iterations that had work
  std::atomic<double> engine_model_seconds_total{0};     // inside prefill and decode calls
  Histogram time_to_first_token;     // seconds from queueing to the first generated token
  Histogram time_per_output_token;   // seconds between consecutive generated tokens

  std::string render() const;
};

}  // namespace duet::server
