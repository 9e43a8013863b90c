// Training ops on the GPU: the same *_forward / *_backward pairs as train/ops.h
// and train/losses.h (the CPU reference), same names, same contracts, called
// in the same order by train/cuda/layer.cu as train/layer.cpp calls the CPU
// ones. Two differences, both for throughput: every op takes B sequences of T
// tokens at once (rows = B*T; RoPE positions and the causal mask restart at
// each sequence), and the GPU functions return Status (every CUDA and cuBLAS
// call is checked; cuda_check.cuh).
//
// Precision: tensors, weights, gradients and optimizer state are float32 on the
// device (the fp32 master weights are the weights the forward reads; there is
// no bf16 copy to keep in sync). Projections and the attention products run
// through cuBLAS with TF32 tensor-core math (CUBLAS_COMPUTE_32F_FAST_TF32:
// 10-bit mantissa inputs, fp32 accumulation), reductions (norms, softmaxes,
// losses) in fp32 with the loss sums in double. TF32 keeps products 8x more
// exact than bf16 (2^-11 vs 2^-8 relative), so the CUDA and CPU gradients agree
// to ~1e-3 and small healing updates (lr 1e-4 on weights of size ~0.05) are not
// lost in rounding; the price is half of bf16's tensor-core rate, which the
// 135M model's small GEMMs (K = 576) do not reach anyway.
//
// Conventions as train/ops.h: row-major, last dim contiguous; every backward
// ACCUMULATES into its gradient outputs; a null gradient pointer is skipped.
// Device pointers throughout; all work is queued on ctx.stream.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"
#include "model/config.h"

namespace duet::train::cuda {

// The stream and cuBLAS handle every op runs on, plus a small device scratch for reductions.
struct TrainContext {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  double* reduce = nullptr;  // [kReduceSlots] device scratch owned by the context's creator
  static constexpr int kReduceSlots = 1 << 16;  // rows of a loss (B*T) and partial sums
};

// cos/sin tables on the device, [positions, Dh/2] each (cpu::rope_table_fill's values).
struct RopeTable {
  int head_dim = 0;
  int positions = 0;
  RopeStyle style = RopeStyle::HalfSplit;
  const float* cos = nullptr;
  const float* sin = nullptr;
};

// rms_norm_forward: y[r,:] = x[r,:] * rstd[r] (* g when non-null), rstd[r] = rsqrt(mean(x[r,:]^2) + eps). x,y [R,D]; g [D]; rstd [R].
Status rms_norm_forward(const TrainContext& ctx, const float* x, const float* g, float* y, float* rstd, int R, int D,
                        float eps);
// rms_norm_backward: dx += d(y)/d(x)^T dy for the forward above (g frozen). dx may alias nothing else.
Status rms_norm_backward(const TrainContext& ctx, const float* dy, const float* x, const float* g, const float* rstd,
                         float* dx, int R, int D);
// rms_norm_heads_forward: y[r,h,:] = x[r,h,:] * rstd[r,h] * w[h,:]. x,y [R,H,Dh]; w [H,Dh]; rstd [R,H].
Status rms_norm_heads_forward(const TrainContext& ctx, const float* x, const float* w, float* y, float* rstd, int R,
                              int H, int Dh, float eps);
// rms_norm_heads_backward: dx += d(y)/d(x)^T dy; dw += d(y)/d(w)^T dy (atomics over rows; dw may be null).
Status rms_norm_heads_backward(const TrainContext& ctx, const float* dy, const float* x, const float* w,
                               const float* rstd, float* dx, float* dw, int R, int H, int Dh);

// matmul_forward: y[R,N] = x[R,K] W[N,K]^T (+ bias[N]). cuBLAS TF32; y must not alias x.
Status matmul_forward(const TrainContext& ctx, const float* x, const float* w, const float* bias, float* y, int R,
                      int N, int K);
// matmul_backward: dx[R,K] += dy W; dw[N,K] += dy^T x; dbias[N] += sum_r dy[r,:]. Any of dx, dw, dbias may be null.
Status matmul_backward(const TrainContext& ctx, const float* dy, const float* x, const float* w, float* dx, float* dw,
                       float* dbias, int R, int N, int K);

// rope_forward: rotates x [B*T,H,Dh] in place; row b*T+t at position t.
Status rope_forward(const TrainContext& ctx, float* x, int B, int T, int H, const RopeTable& table);
// rope_backward: dx [B*T,H,Dh] in place becomes R^T dx (rotation by minus the angle).
Status rope_backward(const TrainContext& ctx, float* dx, int B, int T, int H, const RopeTable& table);

// attention_forward: per sequence b, att[b,h,t,s] = softmax_{s<=t}(q[b,t,h,:].k[b,s,g,:]/sqrt(Dh)) (0 for s > t),
// out[b,t,h,:] = sum_s att v[b,s,g,:], g = h / (H/Hkv). q,out [B,T,H,Dh]; k,v [B,T,Hkv,Dh]; att [B,H,T,T] saved.
// Scores and products through cuBLAS strided-batched GEMMs over the KV heads.
Status attention_forward(const TrainContext& ctx, const float* q, const float* k, const float* v, float* out,
                         float* att, int B, int T, int H, int Hkv, int Dh);
// attention_backward: dq, dk, dv += the gradients of the forward above given dout and the saved att;
// datt [B,H,T,T] is scratch (overwritten).
Status attention_backward(const TrainContext& ctx, const float* dout, const float* q, const float* k, const float* v,
                          const float* att, float* datt, float* dq, float* dk, float* dv, int B, int T, int H, int Hkv,
                          int Dh);

// swiglu_forward: out[i] = silu(gate[i]) * up[i]. out may alias neither input.
Status swiglu_forward(const TrainContext& ctx, const float* gate, const float* up, float* out, int64_t n);
// swiglu_backward: dgate[i] += dout[i] * up[i] * silu'(gate[i]); dup[i] += dout[i] * silu(gate[i]).
Status swiglu_backward(const TrainContext& ctx, const float* dout, const float* gate, const float* up, float* dgate,
                       float* dup, int64_t n);

// residual_forward: out[i] = a[i] + b[i]. out may alias a or b.
Status residual_forward(const TrainContext& ctx, const float* a, const float* b, float* out, int64_t n);
// residual_backward: da[i] += dout[i]; db[i] += dout[i] (either may be null).
Status residual_backward(const TrainContext& ctx, const float* dout, float* da, float* db, int64_t n);

// embedding_forward: x[r,:] = table[tokens[r],:]. tokens [R] device; table [V,D]; x [R,D].
Status embedding_forward(const TrainContext& ctx, const int32_t* tokens, const float* table, float* x, int R, int D);

// --- losses (train/losses.h); each forward writes its loss to a device scalar, each backward accumulates
// scale * d(loss)/d(input).

// mse_forward: loss[0] = sum_i (y-target)^2 / sum_i target^2; tnorm[0] = sum_i target^2 (saved). Device scalars.
Status mse_forward(const TrainContext& ctx, const float* y, const float* target, int64_t n, float* loss, float* tnorm);
// mse_backward: dy[i] += scale * 2 (y[i] - target[i]) / tnorm[0].
Status mse_backward(const TrainContext& ctx, const float* y, const float* target, const float* tnorm, int64_t n,
                    float scale, float* dy);
// kl_forward: loss[0] = (1/R) sum_r KL(softmax(p[r,:]) || softmax(q[r,:])). p,q [R,V] logits.
Status kl_forward(const TrainContext& ctx, const float* p_logits, const float* q_logits, int R, int V, float* loss);
// kl_backward: dq[r,v] += scale * (Q[r,v] - P[r,v]) / R.
Status kl_backward(const TrainContext& ctx, const float* p_logits, const float* q_logits, int R, int V, float scale,
                   float* dq);
// cross_entropy_forward: loss[0] = mean over b, t < T-1 of -log softmax(logits[b,t,:])[tokens[b,t+1]]. logits [B*T,V]; tokens [B*T].
Status cross_entropy_forward(const TrainContext& ctx, const float* logits, const int32_t* tokens, int B, int T, int V,
                             float* loss);
// cross_entropy_backward: dlogits[b,t,v] += scale * (softmax - onehot(tokens[b,t+1])) / (B (T-1)) for t < T-1.
Status cross_entropy_backward(const TrainContext& ctx, const float* logits, const int32_t* tokens, int B, int T,
                              int V, float scale, float* dlogits);

// --- optimizer (train/adamw.h)

// adamw_update: step t (1-based) over n parameters, as train::adamw_update; bias corrections computed on the host.
Status adamw_update(const TrainContext& ctx, float* params, const float* grads, float* m, float* v, int64_t n,
                    int64_t t, float lr, float beta1, float beta2, float eps, float weight_decay);
// grad_norm_squared: out[0] = sum_i g[i]^2 (double, device scalar).
Status grad_norm_squared(const TrainContext& ctx, const float* g, int64_t n, double* out);
// scale_by_clip: g *= max_norm / sqrt(norm2[0]) when that norm exceeds max_norm > 0 (norm2 read on the device).
Status scale_by_clip(const TrainContext& ctx, float* g, int64_t n, const double* norm2, float max_norm);

}  // namespace duet::train::cuda
