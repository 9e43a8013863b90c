#include "backends/cpu/cpu_model.h"

#include <algorithm>
#include <cstring>

#include "kernels/ops.h"

namespace duet {

CpuModel::CpuModel(const ModelWeights& weights, int max_positions)
    : weights_(weights), max_positions_(max_positions) {
  const size_t n = static_cast<size_t>(max_positions) * (weights.config.head_dim / 2);
  rope_cos_.resize(n);
  rope_sin_.resize(n);
  cpu::rope_table_fill(weights.config, max_positions, rope_cos_.data(), rope_sin_.data());
}

void CpuModel::embed(const int32_t* tokens, int T, float* x) const {
  const int D = config().dim;
  for (int t = 0; t < T; ++t) std::memcpy(x + static_cast<int64_t>(t) * D, weights_.token_embd.row(tokens[t]), D * sizeof(float));
}

void CpuModel::attention_block(const LayerWeights& layer, LayerCache& cache, int pos0, const float* x, int T,
                               float* out) const {
  const ModelConfig& c = config();
  const int D = c.dim, Dh = c.head_dim, H = layer.n_heads, Hkv = layer.n_kv_heads;
  const int64_t kv_row = static_cast<int64_t>(Hkv) * Dh;
  std::vector<float> xn(static_cast<size_t>(T) * D), q(static_cast<size_t>(T) * H * Dh),
      attn(static_cast<size_t>(T) * H * Dh);
  cpu::rms_norm(x, layer.attn_norm.data(), xn.data(), T, D, c.rms_eps);

  // K and V go straight into the cache rows of positions [pos0, pos0+T).
  float* k = cache.k.data() + pos0 * kv_row;
  float* v = cache.v.data() + pos0 * kv_row;
  auto bias = [](const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); };
  cpu::matmul(xn.data(), layer.attn_q.data.data(), bias(layer.attn_q_bias), q.data(), T, H * Dh, D);
  cpu::matmul(xn.data(), layer.attn_k.data.data(), bias(layer.attn_k_bias), k, T, Hkv * Dh, D);
  cpu::matmul(xn.data(), layer.attn_v.data.data(), bias(layer.attn_v_bias), v, T, Hkv * Dh, D);
  if (!layer.attn_q_norm.empty()) {
    cpu::rms_norm_heads(q.data(), layer.attn_q_norm.data.data(), T, H, Dh, c.rms_eps);
    cpu::rms_norm_heads(k, layer.attn_k_norm.data.data(), T, Hkv, Dh, c.rms_eps);
  }
  const cpu::RopeTable table{Dh, max_positions_, c.rope_style, rope_cos_.data(),
                             rope_sin_.data()};
  cpu::rope(q.data(), T, H, pos0, table);
  cpu::rope(k, T, Hkv, pos0, table);
  cpu::attention_causal(q.data(), cache.k.data(), cache.v.data(), attn.data(), T, pos0, H, Hkv, Dh);
  cpu::matmul(attn.data(), layer.attn_out.data.data(), nullptr, out, T, D, H * Dh);
}

void CpuModel::ffn_block(const LayerWeights& layer, const float* x, int T, float* out) const {
  const ModelConfig& c = config();
  const int D = c.dim, F = layer.ffn_dim;
  std::vector<float> xn(static_cast<size_t>(T) * D), gate(static_cast<size_t>(T) * F), up(static_cast<size_t>(T) * F);
  cpu::rms_norm(x, layer.ffn_norm.data(), xn.data(), T, D, c.rms_eps);
  cpu::matmul(xn.data(), layer.ffn_gate.data.data(), nullptr, gate.data(), T, F, D);
  cpu::matmul(xn.data(), layer.ffn_up.data.data(), nullptr, up.data(), T, F, D);
  cpu::silu_mul(gate.data(), up.data(), gate.data(), static_cast<int64_t>(T) * F);
  cpu::matmul(gate.data(), layer.ffn_down.data.data(), nullptr, out, T, D, F);
}

void CpuModel::output_logits(const float* x, int T, float* logits) const {
  const ModelConfig& c = config();
  std::vector<float> xn(static_cast<size_t>(T) * c.dim);
  cpu::rms_norm(x, weights_.output_norm.data(), xn.data(), T, c.dim, c.rms_eps);
  cpu::matmul(xn.data(), weights_.output_matrix().data.data(), nullptr, logits, T, c.vocab_size, c.dim);
}

Status CpuModel::forward(const int32_t* tokens, int T, KvCache& cache, LogitsMode mode,
                         std::vector<float>& logits) const {
  const ModelConfig& c = config();
  if (T <= 0) return make_error("forward: no tokens to run");
  if (cache.length + T > cache.capacity || cache.length + T > max_positions_) {
    return make_error(cache.length + T, " tokens do not fit the context of ", std::min(cache.capacity, max_positions_),
                      " positions (", cache.length, " already used); raise --ctx or shorten the prompt");
  }
  for (int t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size) {
      return make_error("token id ", tokens[t], " is outside the vocabulary [0, ", c.vocab_size, ")");
    }
  }
  const int64_t n = static_cast<int64_t>(T) * c.dim;
  std::vector<float> x(n), block_out(n);
  embed(tokens, T, x.data());
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& layer = weights_.layers[l];
    attention_block(layer, cache.layers[l], cache.length, x.data(), T, block_out.data());
    cpu::add_inplace(x.data(), block_out.data(), n);
    ffn_block(layer, x.data(), T, block_out.data());
    cpu::add_inplace(x.data(), block_out.data(), n);
  }
  cache.length += T;
  const int rows = mode == LogitsMode::All ? T : 1;
  logits.resize(static_cast<size_t>(rows) * c.vocab_size);
  output_logits(x.data() + (T - rows) * static_cast<int64_t>(c.dim), rows, logits.data());
  return ok_status();
}

}  // namespace duet
