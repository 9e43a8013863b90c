#include "model/lp_merge.h"

#include <utility>

#include "core/check.h"

namespace duet {
namespace {

// W diag(g): scales column c of every row by gain[c].
Matrix fold_gain(const Matrix& w, const std::vector<float>& gain) {
  DUET_CHECK(static_cast<int64_t>(gain.size()) == w.cols);
  Matrix out = w;
  for (int64_t r = 0; r < out.rows; ++r) {
    float* row = out.row(r);
    for (int64_t c = 0; c < out.cols; ++c) row[c] *= gain[c];
  }
  return out;
}

// [a; b]: rows of a, then rows of b.
Matrix stack_rows(const Matrix& a, const Matrix& b) {
  DUET_CHECK(a.cols == b.cols);
  Matrix out{a.rows + b.rows, a.cols, a.data};
  out.data.insert(out.data.end(), b.data.begin(), b.data.end());
  return out;
}

// [a | b]: a's columns then b's, so out x = a x[:a.cols] + b x[a.cols:].
Matrix concat_cols(const Matrix& a, const Matrix& b) {
  DUET_CHECK(a.rows == b.rows);
  Matrix out{a.rows, a.cols + b.cols, std::vector<float>(a.rows * (a.cols + b.cols))};
  for (int64_t r = 0; r < a.rows; ++r) {
    std::copy(a.row(r), a.row(r) + a.cols, out.row(r));
    std::copy(b.row(r), b.row(r) + b.cols, out.row(r) + a.cols);
  }
  return out;
}

std::vector<float> concat(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

LayerWeights merge_layer_pair(const LayerWeights& a, const LayerWeights& b, int head_dim) {
  // Query head h reads KV head h / (H/Hkv); stacking keeps that true for both
  // halves only when they share the group size.
  DUET_CHECK(a.n_heads * b.n_kv_heads == b.n_heads * a.n_kv_heads);
  LayerWeights w;
  w.n_heads = a.n_heads + b.n_heads;
  w.n_kv_heads = a.n_kv_heads + b.n_kv_heads;
  w.ffn_dim = a.ffn_dim + b.ffn_dim;
  w.source_layers = a.source_layers;
  w.source_layers.insert(w.source_layers.end(), b.source_layers.begin(), b.source_layers.end());

  // Both halves read r(x); the gains move into the weights, so the shared norm has gain 1.
  w.attn_norm.assign(a.attn_norm.size(), 1.0f);
  w.attn_q = stack_rows(fold_gain(a.attn_q, a.attn_norm), fold_gain(b.attn_q, b.attn_norm));
  w.attn_k = stack_rows(fold_gain(a.attn_k, a.attn_norm), fold_gain(b.attn_k, b.attn_norm));
  w.attn_v = stack_rows(fold_gain(a.attn_v, a.attn_norm), fold_gain(b.attn_v, b.attn_norm));
  w.attn_q_bias = concat(a.attn_q_bias, b.attn_q_bias);
  w.attn_k_bias = concat(a.attn_k_bias, b.attn_k_bias);
  w.attn_v_bias = concat(a.attn_v_bias, b.attn_v_bias);
  if (!a.attn_q_norm.empty()) {
    DUET_CHECK(a.attn_q_norm.cols == head_dim);
    w.attn_q_norm = stack_rows(a.attn_q_norm, b.attn_q_norm);
    w.attn_k_norm = stack_rows(a.attn_k_norm, b.attn_k_norm);
  }
  w.attn_out = concat_cols(a.attn_out, b.attn_out);

  w.ffn_norm.assign(a.ffn_norm.size(), 1.0f);
  w.ffn_gate = stack_rows(fold_gain(a.ffn_gate, a.ffn_norm), fold_gain(b.ffn_gate, b.ffn_norm));
  w.ffn_up = stack_rows(fold_gain(a.ffn_up, a.ffn_norm), fold_gain(b.ffn_up, b.ffn_norm));
  w.ffn_down = concat_cols(a.ffn_down, b.ffn_down);
  return w;
}

Result<ModelWeights> apply_lp_plan(ModelWeights weights, const LpPlan& plan) {
  DUET_TRY(validate_lp_plan(plan, weights.depth()));
  if (plan.empty()) return weights;
  std::vector<LayerWeights> merged;
  size_t next_pair = 0;
  for (int i = 0; i < weights.depth(); ++i) {
    if (next_pair < plan.pair_starts.size() && plan.pair_starts[next_pair] == i) {
      merged.push_back(merge_layer_pair(weights.layers[i], weights.layers[i + 1], weights.config.head_dim));
      ++next_pair;
      ++i;  // layer i+1 is inside the wide layer
    } else {
      merged.push_back(std::move(weights.layers[i]));
    }
  }
  weights.layers = std::move(merged);
  return weights;
}

}  // namespace duet
