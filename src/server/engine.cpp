#include "server/engine.h"

#include <algorithm>
#include <random>

#include "core/check.h"

namespace duet::server {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
// The loop thread is the only writer of these counters, so a load and a store make the sum.
void add_seconds(std::atomic<double>& total, double seconds) { total.store(total.load() + seconds); }
EngineEvent finished_event(FinishReason reason, const std::string& error = "") {
  EngineEvent done;
  done.kind = EngineEvent::Kind::kFinished;
  done.finish = reason;
  done.error = error;
  return done;
}
}  // namespace

RequestHandle::RequestHandle(GenerationRequest request) : request_(std::move(request)) {}

bool RequestHandle::wait_events(std::vector<EngineEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (events_.empty()) ready_.wait_for(lock, timeout, [&] { return !events_.empty(); });
  if (events_.empty()) return false;
  for (EngineEvent& e : events_) out.push_back(std::move(e));
  events_.clear();
  return true;
}

void RequestHandle::push(EngineEvent event) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(event));
  }
  ready_.notify_all();
}

// A request holding a KV slot. Loop thread only.
struct Engine::Slot {
  std::shared_ptr<RequestHandle> handle;
  uint64_t admitted = 0;  // admission number (lower = older)
  int prefilled = 0;      // prompt tokens already in the cache
  bool decoding = false;  // prompt done; `next_token` waits to be run
  int32_t next_token = 0;
  int generated = 0;
  Sampler sampler;
  std::vector<LogprobEntry> prompt_logprobs;  // echo: gathered over the chunks
  std::vector<float> last_row;                // echo: the previous chunk's last logits row
  Clock::time_point last_token_at;

  Slot(std::shared_ptr<RequestHandle> h, uint64_t order)
      : handle(std::move(h)), admitted(order), sampler(handle->request().sampling) {}
  const GenerationRequest& request() const { return handle->request(); }
};

Engine::Engine(std::unique_ptr<BatchDecoder> decoder, std::vector<bool> is_end_of_generation,
               const EngineOptions& options)
    : decoder_(std::move(decoder)),
      end_of_generation_(std::move(is_end_of_generation)),
      options_(options),
      slots_(decoder_->slots()),
      capacity_(decoder_->capacity()),
      vocab_size_(decoder_->vocab_size()),
      device_name_(decoder_->device_name()),
      slot_state_(slots_) {
  metrics_.kv_slots_total = slots_;
  sender_ = std::thread([this] { send_loop(); });
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (auto& slot : slot_state_) {
    if (slot) finish(*slot, FinishReason::kCancelled);
  }
  for (auto& handle : queue_) {
    post(handle, finished_event(FinishReason::kCancelled));
  }
  flush();
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    send_stop_ = true;
  }
  send_wake_.notify_one();
  sender_.join();  // after it has delivered everything posted
}

void Engine::post(const std::shared_ptr<RequestHandle>& handle, EngineEvent event) {
  outbox_.emplace_back(handle, std::move(event));
}

void Engine::flush() {
  if (outbox_.empty()) return;
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    for (auto& item : outbox_) sending_.push_back(std::move(item));
  }
  outbox_.clear();
  send_wake_.notify_one();
}

void Engine::send_loop() {
  std::vector<Outgoing> batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(send_mutex_);
      send_wake_.wait(lock, [&] { return send_stop_ || !sending_.empty(); });
      if (sending_.empty()) return;  // stopping, and all delivered
      batch.swap(sending_);
    }
    for (auto& [handle, event] : batch) handle->push(std::move(event));
    batch.clear();
  }
}

Result<std::shared_ptr<RequestHandle>> Engine::submit(GenerationRequest request) {
  DUET_CHECK(!request.prompt.empty());
  auto handle = std::make_shared<RequestHandle>(std::move(request));
  handle->queued_at_ = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Up to max_waiting requests may wait beyond the slots that are free (the loop admits those next).
    const int64_t free_slots = slots_ - metrics_.kv_slots_used.load();
    if (static_cast<int64_t>(queue_.size()) >= options_.max_waiting + free_slots) {
      metrics_.requests_rejected_total++;
      return make_error("the server is busy: ", queue_.size(), " requests are waiting for one of ", slots_,
                        " slots; retry later");
    }
    queue_.push_back(handle);
    metrics_.requests_waiting = static_cast<int64_t>(queue_.size());
  }
  wake_.notify_all();
  return handle;
}

void Engine::loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      const bool idle = std::none_of(slot_state_.begin(), slot_state_.end(), [](const auto& s) { return s != nullptr; });
      if (idle) wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
    }
    const Clock::time_point start = Clock::now();
    drop_cancelled();
    admit();
    prefill_step();
    flush();  // first tokens go out before the decode step, not after it
    decode_step();
    flush();
    add_seconds(metrics_.engine_busy_seconds_total, seconds_between(start, Clock::now()));
  }
}

void Engine::admit() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int s = 0; s < slots_ && !queue_.empty(); ++s) {
    if (slot_state_[s]) continue;
    std::shared_ptr<RequestHandle> handle = std::move(queue_.front());
    queue_.pop_front();
    if (handle->cancelled()) {
      post(handle, finished_event(FinishReason::kCancelled));
      metrics_.requests_cancelled_total++;
      --s;  // the slot is still free
      continue;
    }
    decoder_->reset(s);
    slot_state_[s] = std::make_unique<Slot>(std::move(handle), admissions_++);
    metrics_.kv_slots_used++;
    metrics_.requests_running++;
  }
  metrics_.requests_waiting = static_cast<int64_t>(queue_.size());
}

void Engine::drop_cancelled() {
  for (auto& slot : slot_state_) {
    if (slot && slot->handle->cancelled()) finish(*slot, FinishReason::kCancelled);
  }
}

void Engine::finish(Slot& slot, FinishReason reason, const std::string& error) {
  // The slot is free and counted so before the request hears that it ended.
  std::shared_ptr<RequestHandle> handle = slot.handle;
  int s = 0;
  while (s < slots_ && slot_state_[s].get() != &slot) ++s;
  DUET_CHECK(s < slots_);
  decoder_->reset(s);
  slot_state_[s].reset();  // destroys `slot`
  metrics_.kv_slots_used--;
  metrics_.requests_running--;
  switch (reason) {
    case FinishReason::kCancelled: metrics_.requests_cancelled_total++; break;
    case FinishReason::kError: metrics_.requests_failed_total++; break;
    default: metrics_.requests_finished_total++; break;
  }
  post(handle, finished_event(reason, error));
}

void Engine::prefill_step() {
  // Short prompts share the step's budget, so that a burst of arrivals reaches the decode batch in a few
  // steps rather than one step each.
  int budget = options_.prefill_chunk;
  while (budget > 0) {
    int s = -1;
    for (int i = 0; i < slots_; ++i) {
      if (slot_state_[i] && !slot_state_[i]->decoding &&
          (s < 0 || slot_state_[i]->admitted < slot_state_[s]->admitted)) {
        s = i;
      }
    }
    if (s < 0) return;
    const int n = std::min(budget, static_cast<int>(slot_state_[s]->request().prompt.size()) - slot_state_[s]->prefilled);
    prefill_tokens(s, n);
    budget -= n;
  }
}

void Engine::prefill_tokens(int s, int n) {
  Slot& slot = *slot_state_[s];
  const GenerationRequest& req = slot.request();
  const int total = static_cast<int>(req.prompt.size());
  const int begin = slot.prefilled;
  const bool echo = req.echo_logprobs;
  std::vector<float> logits;
  const Clock::time_point start = Clock::now();
  const Status st = decoder_->prefill(s, req.prompt.data() + begin, n, echo ? LogitsMode::All : LogitsMode::Last, logits);
  add_seconds(metrics_.engine_model_seconds_total, seconds_between(start, Clock::now()));
  if (!st.ok()) return finish(slot, FinishReason::kError, st.message());
  slot.prefilled += n;
  metrics_.prompt_tokens_total += n;
  const int V = vocab_size_;
  const int top_n = std::max(req.top_logprobs, 0);
  if (echo) {
    // Token p of the prompt is predicted by the row of position p-1: the previous
    // chunk's last row for the chunk's first token, this chunk's rows after it.
    for (int j = 0; j < n; ++j) {
      const int p = begin + j;
      if (p == 0) continue;
      const float* row = j == 0 ? slot.last_row.data() : logits.data() + static_cast<size_t>(j - 1) * V;
      slot.prompt_logprobs.push_back(logprob_entry(row, V, req.prompt[p], top_n));
    }
    slot.last_row.assign(logits.end() - V, logits.end());
  }
  if (slot.prefilled < total) return;

  if (echo) {
    EngineEvent event;
    event.kind = EngineEvent::Kind::kPromptLogprobs;
    event.prompt_logprobs = std::move(slot.prompt_logprobs);
    post(slot.handle, std::move(event));
  }
  if (req.max_tokens == 0) return finish(slot, FinishReason::kLength);
  slot.decoding = true;
  const float* row = logits.data() + logits.size() - V;
  emit_token(slot, slot.sampler.sample(row, V), row);
}

void Engine::emit_token(Slot& slot, int32_t token, const float* row) {
  const GenerationRequest& req = slot.request();
  if (token < 0 || token >= vocab_size_) {  // a selection that found no finite logit
    return finish(slot, FinishReason::kError, "the model's logits for this request are not numbers (NaN)");
  }
  const Clock::time_point now = Clock::now();
  if (slot.generated == 0) {
    metrics_.time_to_first_token.observe(seconds_between(slot.handle->queued_at_, now));
  } else {
    metrics_.time_per_output_token.observe(seconds_between(slot.last_token_at, now));
  }
  slot.last_token_at = now;
  ++slot.generated;
  metrics_.generation_tokens_total++;
  slot.next_token = token;

  const bool end = req.stop_at_end_of_generation && token >= 0 &&
                   token < static_cast<int32_t>(end_of_generation_.size()) && end_of_generation_[token];
  // End tokens are sent too (without text): a client counting on max_tokens entries of logprobs,
  // as lm-eval's echo scoring does, must get one even when the model would stop there.
  EngineEvent event;
  event.kind = EngineEvent::Kind::kToken;
  event.token = token;
  event.end_of_generation = end;
  if (req.top_logprobs >= 0) event.logprobs = logprob_entry(row, vocab_size_, token, req.top_logprobs);
  post(slot.handle, std::move(event));
  if (end) return finish(slot, FinishReason::kStop);
  if (slot.generated >= req.max_tokens) return finish(slot, FinishReason::kLength);
  // The caller checked prompt + max_tokens <= capacity; this guards a slot that is full anyway.
  if (static_cast<int>(req.prompt.size()) + slot.generated >= capacity_) return finish(slot, FinishReason::kLength);
}

void Engine::decode_step() {
  // Rows that ask for logprobs need their whole row; the others only the few candidates their
  // sampler draws from, which a CUDA decoder selects on the device.
  std::vector<int32_t> ids, tokens, top;
  for (int s = 0; s < slots_; ++s) {
    Slot* slot = slot_state_[s].get();
    if (slot && slot->decoding) {
      ids.push_back(s);
      tokens.push_back(slot->next_token);
      top.push_back(slot->request().top_logprobs >= 0 ? 0 : slot->sampler.candidates_needed(vocab_size_));
    }
  }
  if (ids.empty()) return;
  const Clock::time_point start = Clock::now();
  const Status st = decoder_->decode_top(ids.data(), tokens.data(), static_cast<int>(ids.size()), top.data(), selection_);
  add_seconds(metrics_.engine_model_seconds_total, seconds_between(start, Clock::now()));
  metrics_.engine_decode_steps_total++;
  metrics_.engine_decode_rows_total += ids.size();
  for (size_t b = 0; b < ids.size(); ++b) {
    Slot& slot = *slot_state_[ids[b]];
    if (!st.ok()) {
      finish(slot, FinishReason::kError, st.message());
      continue;
    }
    if (top[b] > 0) {
      const size_t at = b * kMaxTopCandidates;
      emit_token(slot, slot.sampler.sample_top(selection_.values.data() + at, selection_.ids.data() + at, top[b]),
                 nullptr);
    } else {
      const float* row = selection_.rows.data() + b * static_cast<size_t>(vocab_size_);
      emit_token(slot, slot.sampler.sample(row, vocab_size_), row);
    }
  }
}

}  // namespace duet::server
