// Perplexity of a token stream with a sliding window.
//
// Windows of `context` tokens start every `stride` tokens; each window scores
// only the tokens that no earlier window scored, so every token after the
// first is predicted once, with at least context - stride tokens of history
// (except in the first window). ppl = exp(mean NLL over scored tokens).
#pragma once

#include <functional>
#include <vector>

#include "core/result.h"
#include "runtime/decoder.h"

namespace duet {

struct PerplexityOptions {
  int context = 512;
  int stride = 256;
  // Called after each window with (windows done, windows total, running ppl).
  std::function<void(int, int, double)> on_progress;
};

struct PerplexityResult {
  double ppl = 0;
  double mean_nll = 0;
  int64_t tokens_scored = 0;
};

Result<PerplexityResult> perplexity(Decoder& decoder, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options);

// log softmax(logits)[target], computed stably in double.
double token_log_prob(const float* logits, int vocab_size, int32_t target);

}  // namespace duet
