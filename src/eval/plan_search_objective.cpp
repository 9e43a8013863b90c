#include "eval/plan_search_objective.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/lp_merge.h"

namespace duet {
namespace {

// log sum exp of a row, stably in double.
double log_sum_exp(const float* row, int V) {
  const double max_logit = *std::max_element(row, row + V);
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(row[i]) - max_logit);
  return max_logit + std::log(sum);
}

}  // namespace

Result<SearchObjective> parse_search_objective(const std::string& name) {
  if (name == "ppl") return SearchObjective::kNll;
  if (name == "kl") return SearchObjective::kKl;
  return make_error("unknown search objective '", name, "'; expected ppl or kl");
}

const char* search_objective_name(SearchObjective objective) {
  return objective == SearchObjective::kNll ? "ppl" : "kl";
}

Result<std::vector<std::vector<int32_t>>> calibration_windows(const std::vector<int32_t>& tokens, int length,
                                                              int count) {
  if (length < 2 || count < 1) return make_error("calibration needs windows of >= 2 tokens, got ", count, " x ", length);
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < length) return make_error("calibration text has ", n, " tokens; a window needs ", length);
  // Starts spread evenly over [0, n - length] so the windows sample the whole text.
  std::vector<std::vector<int32_t>> windows;
  for (int w = 0; w < count; ++w) {
    const int64_t start = count == 1 ? 0 : (n - length) * w / (count - 1);
    windows.emplace_back(tokens.begin() + start, tokens.begin() + start + length);
  }
  return windows;
}

void append_top_k(const float* logits, int T, int V, TopKDistributions& out) {
  const int k = out.k;
  std::vector<int32_t> order(V);
  for (int t = 0; t < T; ++t) {
    const float* row = logits + static_cast<int64_t>(t) * V;
    const double lse = log_sum_exp(row, V);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int32_t a, int32_t b) { return row[a] > row[b]; });
    double top_mass = 0;
    for (int i = 0; i < k; ++i) {
      const double lp = row[order[i]] - lse;
      out.ids.push_back(order[i]);
      out.log_probs.push_back(static_cast<float>(lp));
      top_mass += std::exp(lp);
    }
    const double rest = 1 - top_mass;
    out.rest_log_prob.push_back(rest > 0 ? static_cast<float>(std::log(rest)) : -INFINITY);
  }
}

double bucketed_kl_sum(const TopKDistributions& reference, int64_t first_row, const float* logits, int T, int V) {
  const int k = reference.k;
  double kl = 0;
#pragma omp parallel for reduction(+ : kl) schedule(static)
  for (int t = 0; t < T; ++t) {
    const float* row = logits + static_cast<int64_t>(t) * V;
    const double lse = log_sum_exp(row, V);
    const int64_t r = first_row + t;
    double q_top = 0, row_kl = 0;
    for (int i = 0; i < k; ++i) {
      const double lp = reference.log_probs[r * k + i];
      const double lq = row[reference.ids[r * k + i]] - lse;
      row_kl += std::exp(lp) * (lp - lq);
      q_top += std::exp(lq);
    }
    const double rest_lp = reference.rest_log_prob[r];
    if (std::isfinite(rest_lp)) {
      // The plan's mass outside the baseline's top-k, floored so a plan that
      // moves all of it inside is penalised finitely.
      const double q_rest = std::max(1 - q_top, 1e-30);
      row_kl += std::exp(rest_lp) * (rest_lp - std::log(q_rest));
    }
    kl += row_kl;
  }
  return kl;
}

CalibrationObjective::CalibrationObjective(const ModelWeights& base, std::vector<std::vector<int32_t>> windows,
                                           SearchObjective objective, DecoderFactory factory)
    : base_(&base), windows_(std::move(windows)), objective_(objective), factory_(std::move(factory)) {
  for (const auto& w : windows_) capacity_ = std::max(capacity_, static_cast<int>(w.size()));
}

Result<CalibrationObjective> CalibrationObjective::create(const ModelWeights& base,
                                                          std::vector<std::vector<int32_t>> windows,
                                                          SearchObjective objective, int top_k,
                                                          DecoderFactory factory) {
  if (windows.empty()) return make_error("plan search needs at least one calibration window");
  CalibrationObjective out(base, std::move(windows), objective, std::move(factory));
  if (objective == SearchObjective::kKl) {
    const int V = base.config.vocab_size;
    out.baseline_.k = top_k <= 0 ? V : std::min(top_k, V);
    DUET_ASSIGN_OR_RETURN(auto decoder, out.factory_(base, out.capacity_));
    std::vector<float> logits;
    for (const auto& w : out.windows_) {
      decoder->reset();
      DUET_TRY(decoder->forward(w.data(), static_cast<int>(w.size()), LogitsMode::All, logits));
      append_top_k(logits.data(), static_cast<int>(w.size()), V, out.baseline_);
    }
  }
  return out;
}

Result<double> CalibrationObjective::score(const LpPlan& plan) const {
  DUET_ASSIGN_OR_RETURN(ModelWeights merged, apply_lp_plan(*base_, plan));
  return score_weights(merged);
}

Result<double> CalibrationObjective::score_weights(const ModelWeights& weights) const {
  DUET_ASSIGN_OR_RETURN(auto decoder, factory_(weights, capacity_));
  double total = 0;
  int64_t count = 0;
  if (objective_ == SearchObjective::kNll) {
    std::vector<SequenceScores> scores;
    DUET_TRY(decoder->score_sequences(windows_, scores));
    for (const SequenceScores& s : scores) {
      for (float lp : s.log_probs) total -= lp;
      count += static_cast<int64_t>(s.log_probs.size());
    }
  } else {
    const int V = weights.config.vocab_size;
    std::vector<float> logits;
    for (const auto& w : windows_) {
      const int T = static_cast<int>(w.size());
      decoder->reset();
      DUET_TRY(decoder->forward(w.data(), T, LogitsMode::All, logits));
      total += bucketed_kl_sum(baseline_, count, logits.data(), T, V);
      count += T;
    }
  }
  return total / static_cast<double>(count);
}

}  // namespace duet
