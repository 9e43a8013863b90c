// The generation loop: prefill the prompt in one batch, then decode one token
// at a time until max_new_tokens or an end-of-generation token.
#pragma once

#include <functional>
#include <vector>

#include "core/result.h"
#include "runtime/decoder.h"
#include "runtime/sampler.h"

namespace duet {

struct GenerateOptions {
  int max_new_tokens = 64;
  SamplingParams sampling;
  std::function<bool(int32_t)> is_end_of_generation;  // null: never stop early
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens (without the prompt)
  double prefill_seconds = 0;
  double decode_seconds = 0;    // time of the decode steps after the first token
  int prompt_tokens = 0;
  double prefill_tokens_per_second() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  // Decode steps per second: tokens produced after the first one, each one forward of T=1.
  double decode_tokens_per_second() const {
    return decode_seconds > 0 && tokens.size() > 1 ? (tokens.size() - 1) / decode_seconds : 0;
  }
};

// Starts from an empty cache. on_token (optional) sees each token as it is made.
Result<GenerateResult> generate(Decoder& decoder, const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                const std::function<void(int32_t)>& on_token = nullptr);

}  // namespace duet
