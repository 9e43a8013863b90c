// Layer Parallelism as a graph restructure: each planned pair (i, i+1) becomes
// one wide layer (docs/layer-parallelism.md):
//   h   = x + Attn_i(norm1_i(x)) + Attn_j(norm1_j(x))
//   out = h + MLP_i(norm2_i(h))  + MLP_j(norm2_j(h))
// RMSNorm gains are folded into the projections that read them (W' = W diag(g)),
// Q/K/V and gate/up rows are stacked, O and down are concatenated along their
// input, so the pair is one layer with 2H heads and a 2F FFN.
#pragma once

#include "core/result.h"
#include "model/lp_plan.h"
#include "model/weights.h"

namespace duet {

// Validates the plan against the model and merges its pairs. An empty plan
// leaves the weights untouched (bit-identical to the baseline).
Result<ModelWeights> apply_lp_plan(ModelWeights weights, const LpPlan& plan);

// The wide layer computing layers a and b in parallel.
LayerWeights merge_layer_pair(const LayerWeights& a, const LayerWeights& b, int head_dim);

}  // namespace duet
