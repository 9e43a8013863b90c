#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace duet {

double token_log_prob(const float* logits, int vocab_size, int32_t target) {
  const float max_logit = *std::max_element(logits, logits + vocab_size);
  const double sum = cpu::sum_exp_shifted(logits, vocab_size, max_logit);
  return static_cast<double>(logits[target]) - max_logit - std::log(sum);
}

Result<PerplexityResult> perplexity(Decoder& decoder, const std::vector<int32_t>& tokens,
                                    const PerplexityOptions& options) {
  if (options.context < 2) return make_error("perplexity: context must be at least 2 tokens, got ", options.context);
  if (options.stride < 1 || options.stride > options.context) {
    return make_error("perplexity: stride must be in [1, context=", options.context, "], got ", options.stride);
  }
  if (options.context > decoder.capacity()) {
    return make_error("perplexity: context ", options.context, " exceeds the decoder's capacity ", decoder.capacity());
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) return make_error("perplexity: the text has ", n, " tokens; at least 2 are needed");

  std::vector<int64_t> starts;
  for (int64_t begin = 0;; begin += options.stride) {
    starts.push_back(begin);
    if (begin + options.context >= n) break;
  }
  const int V = decoder.vocab_size();
  std::vector<float> logits;
  double nll = 0;
  int64_t scored = 0, next_target = 1;  // first token index not yet scored
  for (size_t w = 0; w < starts.size(); ++w) {
    const int64_t begin = starts[w], end = std::min(begin + options.context, n);
    decoder.reset();
    DUET_TRY(decoder.forward(tokens.data() + begin, static_cast<int>(end - begin), LogitsMode::All, logits));
    // Row r predicts token begin + r + 1.
    for (int64_t target = std::max(next_target, begin + 1); target < end; ++target) {
      nll -= token_log_prob(logits.data() + (target - begin - 1) * V, V, tokens[target]);
      ++scored;
    }
    next_target = end;
    if (options.on_progress) options.on_progress(static_cast<int>(w + 1), static_cast<int>(starts.size()), std::exp(nll / scored));
  }
  PerplexityResult result;
  result.tokens_scored = scored;
  result.mean_nll = nll / scored;
  result.ppl = std::exp(result.mean_nll);
  return result;
}

}  // namespace duet
