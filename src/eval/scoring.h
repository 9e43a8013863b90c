// Log-likelihood of a continuation given its context, as lm-evaluation-harness
// computes it: encode `context` and `context + continuation`; the continuation
// tokens are those of the whole after the context's tokens (so a merge across
// the boundary is scored as the harness scores it). Every forward pass goes
// through Decoder::score_sequences, the one place a backend batches.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/result.h"
#include "eval/tasks.h"
#include "runtime/decoder.h"
#include "tokenizer/tokenizer.h"

namespace duet {

struct TokenizedRequest {
  std::vector<int32_t> tokens;  // context then continuation, left-truncated to the window
  int continuation_begin = 0;   // index of the first continuation token (>= 1)
};

// `max_tokens` is the decoder's window: longer requests lose context tokens from
// the left, as the harness does. An empty context is replaced by BOS (or EOS)
// so the first continuation token has something to be predicted from.
Result<TokenizedRequest> tokenize_request(const Tokenizer& tokenizer, const Request& request, int max_tokens);

struct RequestScore {
  double loglik = 0;    // sum of log P(continuation token | everything before it)
  bool greedy = false;  // every continuation token is the argmax prediction
  int n_tokens = 0;     // continuation tokens scored
};

struct ScoringOptions {
  int batch_size = 32;  // sequences per score_sequences call
  // Called after each batch with (tokens done, tokens total).
  std::function<void(int64_t, int64_t)> on_progress;
};

// Scores every request; result i belongs to requests[i]. Requests run longest
// first (as in the harness) so a batching backend pads little; adjacent requests
// with one context stay together. Only continuation positions are asked for.
Result<std::vector<RequestScore>> score_requests(Decoder& decoder, const std::vector<TokenizedRequest>& requests,
                                                 const ScoringOptions& options);

// Sums one sequence's scores over its continuation (exposed for tests).
RequestScore continuation_score(const TokenizedRequest& request, const SequenceScores& scores);

}  // namespace duet
