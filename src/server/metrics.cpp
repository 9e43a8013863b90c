#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

namespace duet::server {
namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void line(std::string& out, const std::string& name, const std::string& help, const char* type, double value) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + number(value) + "\n";
}

// TTFT spans queueing and prefill; TPOT one decode step (a few ms on a GPU, tens on 2 CPU cores).
std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48};
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  std::lock_guard<std::mutex> lock(mutex_);
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& help, std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum " + number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics() : time_to_first_token(latency_bounds()), time_per_output_token(latency_bounds()) {}

std::string Metrics::render() const {
  std::string out;
  line(out, "duet_requests_running", "requests holding a KV slot", "gauge", requests_running.load());
  line(out, "duet_requests_waiting", "requests queued for a KV slot", "gauge", requests_waiting.load());
  line(out, "duet_kv_slots_used", "KV cache slots in use", "gauge", kv_slots_used.load());
  line(out, "duet_kv_slots_total", "KV cache slots", "gauge", static_cast<double>(kv_slots_total));
  line(out, "duet_prompt_tokens_total", "prompt tokens prefilled", "counter", prompt_tokens_total.load());
  line(out, "duet_generation_tokens_total", "tokens generated", "counter", generation_tokens_total.load());
  line(out, "duet_requests_finished_total", "requests that ran to their end", "counter", requests_finished_total.load());
  line(out, "duet_requests_cancelled_total", "requests ended early (client gone or stop string)", "counter",
       requests_cancelled_total.load());
  line(out, "duet_requests_rejected_total", "requests refused because the queue was full", "counter",
       requests_rejected_total.load());
  line(out, "duet_requests_failed_total", "requests ended by an engine error", "counter", requests_failed_total.load());
  line(out, "duet_http_client_errors_total", "requests answered with a 4xx status", "counter",
       http_client_errors_total.load());
  line(out, "duet_engine_decode_steps_total", "batched decode steps", "counter", engine_decode_steps_total.load());
  line(out, "duet_engine_decode_rows_total", "sequences decoded over those steps", "counter",
       engine_decode_rows_total.load());
  line(out, "duet_engine_busy_seconds_total", "seconds the engine loop had work", "counter",
       engine_busy_seconds_total.load());
  line(out, "duet_engine_model_seconds_total", "seconds inside the model's prefill and decode calls", "counter",
       engine_model_seconds_total.load());
  time_to_first_token.render("duet_time_to_first_token_seconds", "seconds from queueing to the first token", out);
  time_per_output_token.render("duet_time_per_output_token_seconds", "seconds between generated tokens", out);
  return out;
}

}  // namespace duet::server
