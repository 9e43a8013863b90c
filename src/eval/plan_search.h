// LP plan search: which pairs of consecutive layers to run in parallel so the
// model loses least. The algorithms only see a score function (lower is
// better: calibration NLL or KL to the baseline, plan_search_objective.h), so
// they are tested with cheap fakes and reused with any objective.
//  - contiguous_sweep: the paper's recipe: one range of n pairs, every start.
//  - beam_search: non-contiguous pair sets grown one pair at a time, keeping
//    the `beam_width` best sets of each size (width 1 = greedy).
#pragma once

#include <functional>
#include <vector>

#include "core/result.h"
#include "model/lp_plan.h"

namespace duet {

struct ScoredPlan {
  LpPlan plan;
  double score = 0;  // lower is better
};

using PlanScoreFn = std::function<Result<double>(const LpPlan&)>;

// The n-pair contiguous range starting at layer `start`: pairs start, start+2, ...
LpPlan contiguous_plan(int start, int n_pairs);

// Scores the contiguous n-pair range at every start 0 .. n_layers - 2n, in
// start order. The best is the min_element by score.
Result<std::vector<ScoredPlan>> contiguous_sweep(const PlanScoreFn& score, int n_layers, int n_pairs);

// Grows pair sets from the empty plan up to n_pairs. Element k of the result
// is the best set of k + 1 pairs found. `on_step(size, best)` reports each size.
Result<std::vector<ScoredPlan>> beam_search(const PlanScoreFn& score, int n_layers, int n_pairs, int beam_width,
                                            const std::function<void(int, const ScoredPlan&)>& on_step = {});

// The best of a non-empty list.
const ScoredPlan& best_plan(const std::vector<ScoredPlan>& plans);

}  // namespace duet
