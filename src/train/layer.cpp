#include "train/layer.h"

#include <algorithm>

#include "core/check.h"

namespace duet::train {
namespace {

const float* or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }
const float* or_null(const Matrix& m) { return m.empty() ? nullptr : m.data.data(); }

// Binds each named tensor of layer `index` in `layout` to its field.
template <class P, class Base>
LayerTensors<P> views(const ParamLayout& layout, Base* flat, int index) {
  LayerTensors<P> v;
  const std::string prefix = "blk." + std::to_string(index) + ".";
  auto bind = [&](const char* name, P& field) {
    const ParamTensor* t = layout.find(prefix + name);
    field = t ? flat + t->offset : nullptr;
  };
  bind("attn_q", v.attn_q);
  bind("attn_k", v.attn_k);
  bind("attn_v", v.attn_v);
  bind("attn_q_bias", v.attn_q_bias);
  bind("attn_k_bias", v.attn_k_bias);
  bind("attn_v_bias", v.attn_v_bias);
  bind("attn_q_norm", v.attn_q_norm);
  bind("attn_k_norm", v.attn_k_norm);
  bind("attn_output", v.attn_out);
  bind("ffn_gate", v.ffn_gate);
  bind("ffn_up", v.ffn_up);
  bind("ffn_down", v.ffn_down);
  return v;
}

std::vector<float> zeros(size_t n) { return std::vector<float>(n, 0.0f); }

}  // namespace

LayerSpec layer_spec(const LayerWeights& layer) {
  LayerSpec s{layer.n_heads, layer.n_kv_heads, layer.ffn_dim, layer.attn_norm.data(), layer.ffn_norm.data(), {}};
  s.w.attn_q = layer.attn_q.data.data();
  s.w.attn_k = layer.attn_k.data.data();
  s.w.attn_v = layer.attn_v.data.data();
  s.w.attn_q_bias = or_null(layer.attn_q_bias);
  s.w.attn_k_bias = or_null(layer.attn_k_bias);
  s.w.attn_v_bias = or_null(layer.attn_v_bias);
  s.w.attn_q_norm = or_null(layer.attn_q_norm);
  s.w.attn_k_norm = or_null(layer.attn_k_norm);
  s.w.attn_out = layer.attn_out.data.data();
  s.w.ffn_gate = layer.ffn_gate.data.data();
  s.w.ffn_up = layer.ffn_up.data.data();
  s.w.ffn_down = layer.ffn_down.data.data();
  return s;
}

LayerSpec layer_spec(const LayerWeights& layer, const ParamLayout& layout, const float* flat, int index) {
  LayerSpec s = layer_spec(layer);
  s.w = views<const float*>(layout, flat, index);
  DUET_CHECK(s.w.attn_q && s.w.ffn_down);
  return s;
}

LayerGrads layer_grads(const ParamLayout& layout, float* flat, int index) { return views<float*>(layout, flat, index); }

int64_t layer_activation_floats(const ModelConfig& c, const LayerSpec& L, int B, int T) {
  const int64_t R = static_cast<int64_t>(B) * T, Q = static_cast<int64_t>(L.n_heads) * c.head_dim,
                K = static_cast<int64_t>(L.n_kv_heads) * c.head_dim;
  // x, xn1, h, xn2; rstd1, rstd2; q, attn_y; k, v; gate, up, act; att.
  int64_t n = R * (4 * c.dim + 2 + 2 * Q + 2 * K + 3 * static_cast<int64_t>(L.ffn_dim)) +
              static_cast<int64_t>(B) * L.n_heads * T * T;
  if (L.w.attn_q_norm != nullptr) n += R * (Q + K + L.n_heads + L.n_kv_heads);  // q_lin, k_lin, q_rstd, k_rstd
  return n;
}

void layer_forward(const ModelConfig& c, const cpu::RopeTable& table, const LayerSpec& L, const float* x, int T,
                   LayerActs& a, float* out) {
  DUET_CHECK(T <= table.positions);
  const int D = c.dim, Dh = c.head_dim, H = L.n_heads, Hkv = L.n_kv_heads, F = L.ffn_dim;
  const int64_t TD = static_cast<int64_t>(T) * D, TQ = static_cast<int64_t>(T) * H * Dh,
                TK = static_cast<int64_t>(T) * Hkv * Dh, TF = static_cast<int64_t>(T) * F;
  const bool qk_norm = L.w.attn_q_norm != nullptr;
  a.T = T;
  a.x.assign(x, x + TD);
  a.rstd1.resize(T);
  a.xn1.resize(TD);
  a.q.resize(TQ);
  a.k.resize(TK);
  a.v.resize(TK);
  a.att.resize(static_cast<size_t>(H) * T * T);
  a.attn_y.resize(TQ);
  a.h.resize(TD);
  a.rstd2.resize(T);
  a.xn2.resize(TD);
  a.gate.resize(TF);
  a.up.resize(TF);
  a.act.resize(TF);

  // Attention block.
  rms_norm_forward(x, L.attn_norm, a.xn1.data(), a.rstd1.data(), T, D, c.rms_eps);
  if (qk_norm) {
    a.q_lin.resize(TQ);
    a.k_lin.resize(TK);
    a.q_rstd.resize(static_cast<size_t>(T) * H);
    a.k_rstd.resize(static_cast<size_t>(T) * Hkv);
    matmul_forward(a.xn1.data(), L.w.attn_q, L.w.attn_q_bias, a.q_lin.data(), T, H * Dh, D);
    matmul_forward(a.xn1.data(), L.w.attn_k, L.w.attn_k_bias, a.k_lin.data(), T, Hkv * Dh, D);
    rms_norm_heads_forward(a.q_lin.data(), L.w.attn_q_norm, a.q.data(), a.q_rstd.data(), T, H, Dh, c.rms_eps);
    rms_norm_heads_forward(a.k_lin.data(), L.w.attn_k_norm, a.k.data(), a.k_rstd.data(), T, Hkv, Dh, c.rms_eps);
  } else {
    matmul_forward(a.xn1.data(), L.w.attn_q, L.w.attn_q_bias, a.q.data(), T, H * Dh, D);
    matmul_forward(a.xn1.data(), L.w.attn_k, L.w.attn_k_bias, a.k.data(), T, Hkv * Dh, D);
  }
  matmul_forward(a.xn1.data(), L.w.attn_v, L.w.attn_v_bias, a.v.data(), T, Hkv * Dh, D);
  rope_forward(a.q.data(), T, H, table);
  rope_forward(a.k.data(), T, Hkv, table);
  attention_forward(a.q.data(), a.k.data(), a.v.data(), a.attn_y.data(), a.att.data(), T, H, Hkv, Dh);
  matmul_forward(a.attn_y.data(), L.w.attn_out, nullptr, a.h.data(), T, D, H * Dh);
  residual_forward(a.h.data(), x, a.h.data(), TD);

  // FFN block.
  rms_norm_forward(a.h.data(), L.ffn_norm, a.xn2.data(), a.rstd2.data(), T, D, c.rms_eps);
  matmul_forward(a.xn2.data(), L.w.ffn_gate, nullptr, a.gate.data(), T, F, D);
  matmul_forward(a.xn2.data(), L.w.ffn_up, nullptr, a.up.data(), T, F, D);
  swiglu_forward(a.gate.data(), a.up.data(), a.act.data(), TF);
  matmul_forward(a.act.data(), L.w.ffn_down, nullptr, out, T, D, F);
  residual_forward(out, a.h.data(), out, TD);
}

void layer_backward(const ModelConfig& c, const cpu::RopeTable& table, const LayerSpec& L, const LayerActs& a,
                    const float* dout, float* dx, const LayerGrads& g) {
  const int T = a.T, D = c.dim, Dh = c.head_dim, H = L.n_heads, Hkv = L.n_kv_heads, F = L.ffn_dim;
  const int64_t TD = static_cast<int64_t>(T) * D, TQ = static_cast<int64_t>(T) * H * Dh,
                TK = static_cast<int64_t>(T) * Hkv * Dh, TF = static_cast<int64_t>(T) * F;
  const bool qk_norm = L.w.attn_q_norm != nullptr;

  // FFN block: out = h + down(swiglu(gate(xn2), up(xn2))).
  std::vector<float> dh(dout, dout + TD);  // the residual passes dout to h
  std::vector<float> dact = zeros(TF), dgate = zeros(TF), dup = zeros(TF), dxn = zeros(TD);
  matmul_backward(dout, a.act.data(), L.w.ffn_down, dact.data(), g.ffn_down, nullptr, T, D, F);
  swiglu_backward(dact.data(), a.gate.data(), a.up.data(), dgate.data(), dup.data(), TF);
  matmul_backward(dgate.data(), a.xn2.data(), L.w.ffn_gate, dxn.data(), g.ffn_gate, nullptr, T, F, D);
  matmul_backward(dup.data(), a.xn2.data(), L.w.ffn_up, dxn.data(), g.ffn_up, nullptr, T, F, D);
  rms_norm_backward(dxn.data(), a.h.data(), L.ffn_norm, a.rstd2.data(), dh.data(), T, D);

  // Attention block: h = x + out_proj(attention(rope(q), rope(k), v)).
  std::vector<float> dy = zeros(TQ), dq = zeros(TQ), dk = zeros(TK), dv = zeros(TK);
  matmul_backward(dh.data(), a.attn_y.data(), L.w.attn_out, dy.data(), g.attn_out, nullptr, T, D, H * Dh);
  attention_backward(dy.data(), a.q.data(), a.k.data(), a.v.data(), a.att.data(), dq.data(), dk.data(), dv.data(), T,
                     H, Hkv, Dh);
  rope_backward(dq.data(), T, H, table);
  rope_backward(dk.data(), T, Hkv, table);
  const float* xn1 = a.xn1.data();
  if (qk_norm) {
    std::vector<float> dq_lin = zeros(TQ), dk_lin = zeros(TK);
    rms_norm_heads_backward(dq.data(), a.q_lin.data(), L.w.attn_q_norm, a.q_rstd.data(), dq_lin.data(), g.attn_q_norm,
                            T, H, Dh);
    rms_norm_heads_backward(dk.data(), a.k_lin.data(), L.w.attn_k_norm, a.k_rstd.data(), dk_lin.data(), g.attn_k_norm,
                            T, Hkv, Dh);
    dq.swap(dq_lin);
    dk.swap(dk_lin);
  }
  std::fill(dxn.begin(), dxn.end(), 0.0f);
  matmul_backward(dq.data(), xn1, L.w.attn_q, dxn.data(), g.attn_q, g.attn_q_bias, T, H * Dh, D);
  matmul_backward(dk.data(), xn1, L.w.attn_k, dxn.data(), g.attn_k, g.attn_k_bias, T, Hkv * Dh, D);
  matmul_backward(dv.data(), xn1, L.w.attn_v, dxn.data(), g.attn_v, g.attn_v_bias, T, Hkv * Dh, D);
  if (dx) {
    std::copy(dh.begin(), dh.end(), dx);
    rms_norm_backward(dxn.data(), a.x.data(), L.attn_norm, a.rstd1.data(), dx, T, D);
  }
}

}  // namespace duet::train
