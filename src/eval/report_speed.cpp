#include "eval/report_speed.h"

#include <algorithm>
#include <chrono>

namespace duet {
namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

Result<SpeedResult> measure_speed(Decoder& decoder, const std::vector<int32_t>& tokens, const SpeedSettings& s) {
  if (tokens.empty()) return make_error("speed measurement needs at least one input token");
  if (s.prompt_tokens < 1 || s.decode_tokens < 1 || s.repeats < 1) {
    return make_error("speed measurement needs positive prompt, decode and repeat counts");
  }
  if (s.prompt_tokens + s.decode_tokens > decoder.capacity()) {
    return make_error("speed measurement needs ", s.prompt_tokens + s.decode_tokens, " positions; the decoder has ",
                      decoder.capacity());
  }
  std::vector<int32_t> input(s.prompt_tokens + s.decode_tokens);
  for (size_t i = 0; i < input.size(); ++i) input[i] = tokens[i % tokens.size()];

  using Clock = std::chrono::steady_clock;
  std::vector<float> logits;
  std::vector<double> prefill_s, decode_s;
  // Repeat 0 warms caches and allocations and is not counted.
  for (int r = 0; r <= s.repeats; ++r) {
    decoder.reset();
    const auto t0 = Clock::now();
    DUET_TRY(decoder.forward(input.data(), s.prompt_tokens, LogitsMode::Last, logits));
    const auto t1 = Clock::now();
    for (int i = 0; i < s.decode_tokens; ++i) {
      DUET_TRY(decoder.forward(input.data() + s.prompt_tokens + i, 1, LogitsMode::Last, logits));
    }
    const auto t2 = Clock::now();
    if (r == 0) continue;
    prefill_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    decode_s.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  decoder.reset();
  return SpeedResult{s.prompt_tokens / median(prefill_s), s.decode_tokens / median(decode_s)};
}

}  // namespace duet
