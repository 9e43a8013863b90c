#include "model/lp_merge.h"

#include <utility>

#include "core/check.h"

namespace duet {
namespace {

// W diag(g): scales column c of every row by gain[c] (float32 rows only).
Matrix fold_gain(const Matrix& w, const std::vector<float>& gain) {
  DUET_CHECK(static_cast<int64_t>(gain.size()) == w.cols);
  Matrix out{w.rows, w.cols, w.data, {}};
  for (int64_t r = 0; r < out.rows; ++r) {
    float* row = out.row(r);
    for (int64_t c = 0; c < out.cols; ++c) row[c] *= gain[c];
  }
  return out;
}

bool same_encoding(const PackedRows& a, const PackedRows& b) {
  return !a.empty() && !b.empty() && a.type == b.type && a.row_bytes == b.row_bytes;
}

// [a; b]: rows of a, then rows of b (encoded rows too, when both halves have them).
Matrix stack_rows(const Matrix& a, const Matrix& b) {
  DUET_CHECK(a.cols == b.cols);
  Matrix out{a.rows + b.rows, a.cols, a.data, {}};
  out.data.insert(out.data.end(), b.data.begin(), b.data.end());
  return out;
}

// Stacks the encoded rows of two layers' matrices; their gains travel in
// the layer's *_packed_gains instead of being folded.
PackedRows stack_packed_rows(const Matrix& a, const Matrix& b) {
  if (!same_encoding(a.packed, b.packed)) return {};
  PackedRows out = a.packed;
  out.bytes.insert(out.bytes.end(), b.packed.bytes.begin(), b.packed.bytes.end());
  return out;
}

// [a | b] on encoded rows: each row's blocks are self-contained, so a row of
// the result is a's row bytes followed by b's.
PackedRows concat_packed_cols(const Matrix& a, const Matrix& b) {
  if (!same_encoding(a.packed, b.packed)) return {};
  PackedRows out{a.packed.type, 2 * a.packed.row_bytes, {}};
  out.bytes.reserve(a.packed.bytes.size() + b.packed.bytes.size());
  for (int64_t r = 0; r < a.rows; ++r) {
    const uint8_t* ra = a.packed.bytes.data() + r * a.packed.row_bytes;
    const uint8_t* rb = b.packed.bytes.data() + r * b.packed.row_bytes;
    out.bytes.insert(out.bytes.end(), ra, ra + a.packed.row_bytes);
    out.bytes.insert(out.bytes.end(), rb, rb + b.packed.row_bytes);
  }
  return out;
}

// The wide layer's matrix reading normed input: folded float32 rows, and the
// unfolded encoded rows.
Matrix stack_folded(const Matrix& a, const std::vector<float>& gain_a, const Matrix& b,
                    const std::vector<float>& gain_b) {
  Matrix out = stack_rows(fold_gain(a, gain_a), fold_gain(b, gain_b));
  out.packed = stack_packed_rows(a, b);
  return out;
}

// [a | b]: a's columns then b's, so out x = a x[:a.cols] + b x[a.cols:].
Matrix concat_cols(const Matrix& a, const Matrix& b) {
  DUET_CHECK(a.rows == b.rows);
  Matrix out{a.rows, a.cols + b.cols, std::vector<float>(a.rows * (a.cols + b.cols)), concat_packed_cols(a, b)};
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
  w.attn_q = stack_folded(a.attn_q, a.attn_norm, b.attn_q, b.attn_norm);
  w.attn_k = stack_folded(a.attn_k, a.attn_norm, b.attn_k, b.attn_norm);
  w.attn_v = stack_folded(a.attn_v, a.attn_norm, b.attn_v, b.attn_norm);
  w.attn_packed_gains = stack_rows(a.attn_packed_gains, b.attn_packed_gains);
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
  w.ffn_gate = stack_folded(a.ffn_gate, a.ffn_norm, b.ffn_gate, b.ffn_norm);
  w.ffn_up = stack_folded(a.ffn_up, a.ffn_norm, b.ffn_up, b.ffn_norm);
  w.ffn_packed_gains = stack_rows(a.ffn_packed_gains, b.ffn_packed_gains);
  w.ffn_down = concat_cols(a.ffn_down, b.ffn_down);
  return w;
}

Result<ModelWeights> apply_lp_plan(ModelWeights weights, const LpPlan& plan) {
  DUET_TRY(validate_lp_plan(plan, weights.depth()));
  if (plan.empty()) return weights;
  // Plans name layers of a uniform model; a model whose layers already differ
  // (an LP model written by duet export) would pair layers of other widths.
  const ModelConfig& c = weights.config;
  for (int i = 0; i < weights.depth(); ++i) {
    const LayerWeights& l = weights.layers[i];
    if (l.source_layers.size() > 1 || l.n_heads != c.n_heads || l.n_kv_heads != c.n_kv_heads || l.ffn_dim != c.ffn_dim) {
      return make_error("an LP plan needs a model with uniform layers, but layer ", i, " has ", l.n_heads, " heads and FFN width ",
                        l.ffn_dim, " (", c.n_heads, " and ", c.ffn_dim, " elsewhere; an exported LP model?): "
                        "run this model without a plan, or apply the plan to the original model");
    }
  }
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
