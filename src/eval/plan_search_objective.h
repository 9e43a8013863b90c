// How much an LP plan damages the model, measured on calibration text:
//  - kNll: mean next-token NLL over the calibration windows (log of perplexity).
//  - kKl:  mean KL(P_baseline || P_plan) over every window position. The
//          baseline's distributions are computed once and kept as their top-k
//          probabilities plus one "rest" bucket, so memory is
//          positions * k * 8 bytes; the bucketed KL is a lower bound of the
//          full KL that reaches it as k -> V.
// Each score merges the plan into a copy of the base weights and runs the
// windows on a fresh decoder from the factory (so --device cuda works too).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/lp_plan.h"
#include "model/weights.h"
#include "runtime/decoder.h"

namespace duet {

enum class SearchObjective { kNll, kKl };

Result<SearchObjective> parse_search_objective(const std::string& name);  // "ppl" | "kl"
const char* search_objective_name(SearchObjective objective);

using DecoderFactory = std::function<Result<std::unique_ptr<Decoder>>(const ModelWeights&, int capacity)>;

// `count` windows of `length` tokens spread evenly over `tokens`.
Result<std::vector<std::vector<int32_t>>> calibration_windows(const std::vector<int32_t>& tokens, int length,
                                                              int count);

// Top-k of log softmax per position, with the log of the mass left outside.
struct TopKDistributions {
  int k = 0;
  std::vector<int32_t> ids;      // [N, k]
  std::vector<float> log_probs;  // [N, k]
  std::vector<float> rest_log_prob;  // [N] log(1 - sum of the top-k probabilities)
};

// Appends the top-k distribution of each row of logits [T, V].
void append_top_k(const float* logits, int T, int V, TopKDistributions& out);
// Sum over rows of the bucketed KL(P || Q), P = `reference` rows
// [first_row, first_row + T), Q = softmax(logits [T, V]).
double bucketed_kl_sum(const TopKDistributions& reference, int64_t first_row, const float* logits, int T, int V);

class CalibrationObjective {
 public:
  // For kKl, runs the baseline once to keep its distributions (top_k <= 0: the whole vocab).
  static Result<CalibrationObjective> create(const ModelWeights& base, std::vector<std::vector<int32_t>> windows,
                                             SearchObjective objective, int top_k, DecoderFactory factory);

  // Lower is better: mean NLL (kNll) or mean KL in nats (kKl).
  Result<double> score(const LpPlan& plan) const;
  SearchObjective objective() const { return objective_; }

 private:
  CalibrationObjective(const ModelWeights& base, std::vector<std::vector<int32_t>> windows, SearchObjective objective,
                       DecoderFactory factory);
  Result<double> score_weights(const ModelWeights& weights) const;

  const ModelWeights* base_;
  std::vector<std::vector<int32_t>> windows_;
  SearchObjective objective_;
  DecoderFactory factory_;
  int capacity_ = 0;
  TopKDistributions baseline_;
};

}  // namespace duet
