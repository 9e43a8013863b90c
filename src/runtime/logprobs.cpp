#include "runtime/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/ops.h"

namespace duet {

LogprobEntry logprob_entry(const float* logits, int vocab_size, int32_t token, int top_n) {
  const float max_logit = *std::max_element(logits, logits + vocab_size);
  const double log_sum = std::log(cpu::sum_exp_shifted(logits, vocab_size, max_logit));  // as token_log_prob
  auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(logits[id]) - max_logit - log_sum);
  };
  LogprobEntry entry;
  entry.chosen = {token, logprob(token)};
  if (top_n > 0) {
    std::vector<int32_t> ids(vocab_size);
    std::iota(ids.begin(), ids.end(), 0);
    const int k = std::min(top_n, vocab_size);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < k; ++i) entry.top.push_back({ids[i], logprob(ids[i])});
  }
  return entry;
}

}  // namespace duet
