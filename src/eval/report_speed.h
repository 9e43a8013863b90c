// Speed of one decoder, measured through the Decoder interface so it works on
// any --device: prefill tokens/s (one forward over a prompt) and decode
// tokens/s (one-token forwards after it). `duet report` measures the baseline
// and every plan in the same run, so their ratio is the LP speedup.
#pragma once

#include <cstdint>
#include <vector>

#include "core/result.h"
#include "runtime/decoder.h"

namespace duet {

struct SpeedSettings {
  int prompt_tokens = 256;
  int decode_tokens = 64;
  int repeats = 3;  // the median repeat is reported (robust to a busy machine)
};

struct SpeedResult {
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
};

// `tokens` supplies the prompt and the decode inputs (cycled), so no sampling
// cost is measured. The decoder needs prompt_tokens + decode_tokens positions.
Result<SpeedResult> measure_speed(Decoder& decoder, const std::vector<int32_t>& tokens, const SpeedSettings& settings);

}  // namespace duet
