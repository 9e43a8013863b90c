// The layer forward/backward on the GPU, line for line train/layer.cpp.
#include "train/cuda/layer.cuh"

namespace duet::train::cuda {

Status layer_forward(const TrainContext& ctx, const ModelConfig& c, const RopeTable& rope, const LayerSpec& L,
                     const float* x, int B, int T, LayerActs& a, float* out) {
  const int R = B * T, D = c.dim, Dh = c.head_dim, H = L.n_heads, Hkv = L.n_kv_heads, F = L.ffn_dim;
  const int64_t RD = static_cast<int64_t>(R) * D, RQ = static_cast<int64_t>(R) * H * Dh,
                RK = static_cast<int64_t>(R) * Hkv * Dh, RF = static_cast<int64_t>(R) * F;
  const bool qk_norm = L.w.attn_q_norm != nullptr;
  a.B = B;
  a.T = T;
  for (auto [buf, n] : {std::pair{&a.x, RD}, {&a.rstd1, int64_t{R}}, {&a.xn1, RD}, {&a.q, RQ}, {&a.k, RK}, {&a.v, RK},
                        {&a.att, static_cast<int64_t>(B) * H * T * T}, {&a.attn_y, RQ}, {&a.h, RD},
                        {&a.rstd2, int64_t{R}}, {&a.xn2, RD}, {&a.gate, RF}, {&a.up, RF}, {&a.act, RF}}) {
    DUET_TRY(buf->reserve(n));
  }
  DUET_CUDA_TRY(cudaMemcpyAsync(a.x.get(), x, RD * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));

  // Attention block.
  DUET_TRY(rms_norm_forward(ctx, x, L.attn_norm, a.xn1.get(), a.rstd1.get(), R, D, c.rms_eps));
  if (qk_norm) {
    DUET_TRY(a.q_lin.reserve(RQ));
    DUET_TRY(a.k_lin.reserve(RK));
    DUET_TRY(a.q_rstd.reserve(static_cast<int64_t>(R) * H));
    DUET_TRY(a.k_rstd.reserve(static_cast<int64_t>(R) * Hkv));
    DUET_TRY(matmul_forward(ctx, a.xn1.get(), L.w.attn_q, L.w.attn_q_bias, a.q_lin.get(), R, H * Dh, D));
    DUET_TRY(matmul_forward(ctx, a.xn1.get(), L.w.attn_k, L.w.attn_k_bias, a.k_lin.get(), R, Hkv * Dh, D));
    DUET_TRY(rms_norm_heads_forward(ctx, a.q_lin.get(), L.w.attn_q_norm, a.q.get(), a.q_rstd.get(), R, H, Dh,
                                    c.rms_eps));
    DUET_TRY(rms_norm_heads_forward(ctx, a.k_lin.get(), L.w.attn_k_norm, a.k.get(), a.k_rstd.get(), R, Hkv, Dh,
                                    c.rms_eps));
  } else {
    DUET_TRY(matmul_forward(ctx, a.xn1.get(), L.w.attn_q, L.w.attn_q_bias, a.q.get(), R, H * Dh, D));
    DUET_TRY(matmul_forward(ctx, a.xn1.get(), L.w.attn_k, L.w.attn_k_bias, a.k.get(), R, Hkv * Dh, D));
  }
  DUET_TRY(matmul_forward(ctx, a.xn1.get(), L.w.attn_v, L.w.attn_v_bias, a.v.get(), R, Hkv * Dh, D));
  DUET_TRY(rope_forward(ctx, a.q.get(), B, T, H, rope));
  DUET_TRY(rope_forward(ctx, a.k.get(), B, T, Hkv, rope));
  DUET_TRY(attention_forward(ctx, a.q.get(), a.k.get(), a.v.get(), a.attn_y.get(), a.att.get(), B, T, H, Hkv, Dh));
  DUET_TRY(matmul_forward(ctx, a.attn_y.get(), L.w.attn_out, nullptr, a.h.get(), R, D, H * Dh));
  DUET_TRY(residual_forward(ctx, a.h.get(), x, a.h.get(), RD));

  // FFN block.
  DUET_TRY(rms_norm_forward(ctx, a.h.get(), L.ffn_norm, a.xn2.get(), a.rstd2.get(), R, D, c.rms_eps));
  DUET_TRY(matmul_forward(ctx, a.xn2.get(), L.w.ffn_gate, nullptr, a.gate.get(), R, F, D));
  DUET_TRY(matmul_forward(ctx, a.xn2.get(), L.w.ffn_up, nullptr, a.up.get(), R, F, D));
  DUET_TRY(swiglu_forward(ctx, a.gate.get(), a.up.get(), a.act.get(), RF));
  DUET_TRY(matmul_forward(ctx, a.act.get(), L.w.ffn_down, nullptr, out, R, D, F));
  DUET_TRY(residual_forward(ctx, out, a.h.get(), out, RD));
  return ok_status();
}

Status layer_backward(const TrainContext& ctx, const ModelConfig& c, const RopeTable& rope, const LayerSpec& L,
                      const LayerActs& a, const float* dout, float* dx, const LayerGrads& g, LayerScratch& s) {
  const int B = a.B, T = a.T, R = B * T, D = c.dim, Dh = c.head_dim, H = L.n_heads, Hkv = L.n_kv_heads,
            F = L.ffn_dim;
  const int64_t RD = static_cast<int64_t>(R) * D, RQ = static_cast<int64_t>(R) * H * Dh,
                RK = static_cast<int64_t>(R) * Hkv * Dh, RF = static_cast<int64_t>(R) * F;
  const bool qk_norm = L.w.attn_q_norm != nullptr;
  for (auto [buf, n] : {std::pair{&s.dh, RD}, {&s.dxn, RD}, {&s.dact, RF}, {&s.dgate, RF}, {&s.dup, RF}, {&s.dy, RQ},
                        {&s.dq, RQ}, {&s.dk, RK}, {&s.dv, RK}, {&s.datt, static_cast<int64_t>(B) * H * T * T}}) {
    DUET_TRY(buf->reserve(n));
  }
  for (auto [buf, n] : {std::pair{&s.dxn, RD}, {&s.dact, RF}, {&s.dgate, RF}, {&s.dup, RF}, {&s.dy, RQ}, {&s.dq, RQ},
                        {&s.dk, RK}, {&s.dv, RK}}) {
    DUET_TRY(buf->zero(n, ctx.stream));
  }

  // FFN block: out = h + down(swiglu(gate(xn2), up(xn2))).
  DUET_CUDA_TRY(cudaMemcpyAsync(s.dh.get(), dout, RD * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));
  DUET_TRY(matmul_backward(ctx, dout, a.act.get(), L.w.ffn_down, s.dact.get(), g.ffn_down, nullptr, R, D, F));
  DUET_TRY(swiglu_backward(ctx, s.dact.get(), a.gate.get(), a.up.get(), s.dgate.get(), s.dup.get(), RF));
  DUET_TRY(matmul_backward(ctx, s.dgate.get(), a.xn2.get(), L.w.ffn_gate, s.dxn.get(), g.ffn_gate, nullptr, R, F, D));
  DUET_TRY(matmul_backward(ctx, s.dup.get(), a.xn2.get(), L.w.ffn_up, s.dxn.get(), g.ffn_up, nullptr, R, F, D));
  DUET_TRY(rms_norm_backward(ctx, s.dxn.get(), a.h.get(), L.ffn_norm, a.rstd2.get(), s.dh.get(), R, D));

  // Attention block: h = x + out_proj(attention(rope(q), rope(k), v)).
  DUET_TRY(matmul_backward(ctx, s.dh.get(), a.attn_y.get(), L.w.attn_out, s.dy.get(), g.attn_out, nullptr, R, D,
                           H * Dh));
  DUET_TRY(attention_backward(ctx, s.dy.get(), a.q.get(), a.k.get(), a.v.get(), a.att.get(), s.datt.get(), s.dq.get(),
                              s.dk.get(), s.dv.get(), B, T, H, Hkv, Dh));
  DUET_TRY(rope_backward(ctx, s.dq.get(), B, T, H, rope));
  DUET_TRY(rope_backward(ctx, s.dk.get(), B, T, Hkv, rope));
  float* dq = s.dq.get();
  float* dk = s.dk.get();
  if (qk_norm) {
    DUET_TRY(s.dq_lin.reserve(RQ));
    DUET_TRY(s.dk_lin.reserve(RK));
    DUET_TRY(s.dq_lin.zero(RQ, ctx.stream));
    DUET_TRY(s.dk_lin.zero(RK, ctx.stream));
    DUET_TRY(rms_norm_heads_backward(ctx, dq, a.q_lin.get(), L.w.attn_q_norm, a.q_rstd.get(), s.dq_lin.get(),
                                     g.attn_q_norm, R, H, Dh));
    DUET_TRY(rms_norm_heads_backward(ctx, dk, a.k_lin.get(), L.w.attn_k_norm, a.k_rstd.get(), s.dk_lin.get(),
                                     g.attn_k_norm, R, Hkv, Dh));
    dq = s.dq_lin.get();
    dk = s.dk_lin.get();
  }
  DUET_TRY(s.dxn.zero(RD, ctx.stream));
  DUET_TRY(matmul_backward(ctx, dq, a.xn1.get(), L.w.attn_q, s.dxn.get(), g.attn_q, g.attn_q_bias, R, H * Dh, D));
  DUET_TRY(matmul_backward(ctx, dk, a.xn1.get(), L.w.attn_k, s.dxn.get(), g.attn_k, g.attn_k_bias, R, Hkv * Dh, D));
  DUET_TRY(matmul_backward(ctx, s.dv.get(), a.xn1.get(), L.w.attn_v, s.dxn.get(), g.attn_v, g.attn_v_bias, R,
                           Hkv * Dh, D));
  if (dx) {
    DUET_CUDA_TRY(cudaMemcpyAsync(dx, s.dh.get(), RD * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));
    DUET_TRY(rms_norm_backward(ctx, s.dxn.get(), a.x.get(), L.attn_norm, a.rstd1.get(), dx, R, D));
  }
  return ok_status();
}

}  // namespace duet::train::cuda
