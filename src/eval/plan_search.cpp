#include "eval/plan_search.h"

#include <algorithm>
#include <set>

#include "core/check.h"

namespace duet {
namespace {

// A pair (p, p+1) fits when it shares no layer with the plan's pairs.
bool pair_fits(const LpPlan& plan, int p) {
  return std::none_of(plan.pair_starts.begin(), plan.pair_starts.end(), [p](int q) { return q > p - 2 && q < p + 2; });
}

}  // namespace

LpPlan contiguous_plan(int start, int n_pairs) {
  LpPlan plan;
  for (int k = 0; k < n_pairs; ++k) plan.pair_starts.push_back(start + 2 * k);
  return plan;
}

const ScoredPlan& best_plan(const std::vector<ScoredPlan>& plans) {
  DUET_CHECK(!plans.empty());
  return *std::min_element(plans.begin(), plans.end(),
                           [](const ScoredPlan& a, const ScoredPlan& b) { return a.score < b.score; });
}

Result<std::vector<ScoredPlan>> contiguous_sweep(const PlanScoreFn& score, int n_layers, int n_pairs) {
  if (n_pairs < 1 || 2 * n_pairs > n_layers) {
    return make_error("cannot place ", n_pairs, " contiguous pairs in a model of ", n_layers, " layers");
  }
  std::vector<ScoredPlan> out;
  for (int start = 0; start + 2 * n_pairs <= n_layers; ++start) {
    LpPlan plan = contiguous_plan(start, n_pairs);
    DUET_ASSIGN_OR_RETURN(double s, score(plan));
    out.push_back({std::move(plan), s});
  }
  return out;
}

Result<std::vector<ScoredPlan>> beam_search(const PlanScoreFn& score, int n_layers, int n_pairs, int beam_width,
                                            const std::function<void(int, const ScoredPlan&)>& on_step) {
  if (n_pairs < 1 || 2 * n_pairs > n_layers) {
    return make_error("cannot place ", n_pairs, " pairs in a model of ", n_layers, " layers");
  }
  if (beam_width < 1) return make_error("beam width must be at least 1, got ", beam_width);
  std::vector<ScoredPlan> beam = {{LpPlan{}, 0}};
  std::vector<ScoredPlan> best_per_size;
  for (int size = 1; size <= n_pairs; ++size) {
    std::set<std::vector<int>> seen;
    std::vector<ScoredPlan> candidates;
    for (const ScoredPlan& parent : beam) {
      for (int p = 0; p + 1 < n_layers; ++p) {
        if (!pair_fits(parent.plan, p)) continue;
        LpPlan child = parent.plan;
        child.pair_starts.insert(std::upper_bound(child.pair_starts.begin(), child.pair_starts.end(), p), p);
        if (!seen.insert(child.pair_starts).second) continue;
        DUET_ASSIGN_OR_RETURN(double s, score(child));
        candidates.push_back({std::move(child), s});
      }
    }
    if (candidates.empty()) return make_error("no room for a pair number ", size, " in ", n_layers, " layers");
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const ScoredPlan& a, const ScoredPlan& b) { return a.score < b.score; });
    if (static_cast<int>(candidates.size()) > beam_width) candidates.resize(beam_width);
    beam = std::move(candidates);
    best_per_size.push_back(beam.front());
    if (on_step) on_step(size, beam.front());
  }
  return best_per_size;
}

}  // namespace duet
