// Log-probabilities of tokens under one row of logits, for the server's
// `logprobs` / `top_logprobs` / `echo`. Values are computed exactly as
// token_log_prob (eval/perplexity.h) computes them and rounded to float as
// `duet eval` stores them, so the harness summing them through the server
// gets the same log-likelihoods as `duet eval`.
#pragma once

#include <cstdint>
#include <vector>

namespace duet {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
};

struct LogprobEntry {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // most likely first, ties by lower id; top_n entries
};

// logits [V]; `token` in [0, V); top_n in [0, V].
LogprobEntry logprob_entry(const float* logits, int vocab_size, int32_t token, int top_n);

}  // namespace duet
