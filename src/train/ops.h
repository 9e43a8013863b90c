// Training ops: a *_forward / *_backward pair per op of a Llama-family layer,
// float32 on the CPU (the reference the CUDA version will match call for call).
//
// Conventions: row-major, last dim contiguous; every backward ACCUMULATES (+=)
// into its gradient outputs (callers zero them), so a tensor read by two ops
// (a residual, an input shared by Q/K/V) sums its gradients for free. A null
// gradient pointer means "not needed" (frozen weights, the input of the first
// trained layer). Shapes: T tokens, D model dim, H/Hkv heads, Dh head dim,
// F FFN width, N/K a projection's output/input width.
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace duet::train {

// rms_norm_forward: y[t,:] = x[t,:] * rstd[t] (* g when g is non-null), rstd[t] = rsqrt(mean(x[t,:]^2) + eps). x,y [T,D]; g [D] a frozen gain; rstd [T] saved.
void rms_norm_forward(const float* x, const float* g, float* y, float* rstd, int T, int D, float eps);
// rms_norm_backward: dx += d(y)/d(x)^T dy for the forward above (no gradient for the frozen gain g).
void rms_norm_backward(const float* dy, const float* x, const float* g, const float* rstd, float* dx, int T, int D);

// rms_norm_heads_forward: y[t,h,:] = x[t,h,:] * rstd[t,h] * w[h,:] (qwen3 q/k norm). x,y [T,H,Dh]; w [H,Dh]; rstd [T,H] saved.
void rms_norm_heads_forward(const float* x, const float* w, float* y, float* rstd, int T, int H, int Dh, float eps);
// rms_norm_heads_backward: dx += d(y)/d(x)^T dy; dw += d(y)/d(w)^T dy (dw may be null).
void rms_norm_heads_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                             int T, int H, int Dh);

// matmul_forward: y[T,N] = x[T,K] W[N,K]^T (+ bias[N]). OpenBLAS sgemm (cpu::matmul); y must not alias x.
void matmul_forward(const float* x, const float* w, const float* bias, float* y, int T, int N, int K);
// matmul_backward: dx[T,K] += dy W; dw[N,K] += dy^T x; dbias[N] += sum_t dy[t,:]. Any of dx, dw, dbias may be null.
void matmul_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* dbias, int T, int N,
                     int K);

// rope_forward: rotates x [T,H,Dh] in place; row t at position t (table.style picks the pairing).
void rope_forward(float* x, int T, int H, const cpu::RopeTable& table);
// rope_backward: dx [T,H,Dh] in place becomes R^T dx (the rotation by minus the angle), the forward being linear.
void rope_backward(float* dx, int T, int H, const cpu::RopeTable& table);

// attention_forward: att[h,t,s] = softmax_{s<=t}(q[t,h,:].k[s,g,:]/sqrt(Dh)), out[t,h,:] = sum_s att[h,t,s] v[s,g,:],
// g = h / (H/Hkv). q,out [T,H,Dh]; k,v [T,Hkv,Dh]; att [H,T,T] saved (entries s > t unused).
void attention_forward(const float* q, const float* k, const float* v, float* out, float* att, int T, int H, int Hkv,
                       int Dh);
// attention_backward: dq, dk, dv += the gradients of the forward above given dout [T,H,Dh] and the saved att.
void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* att, float* dq,
                        float* dk, float* dv, int T, int H, int Hkv, int Dh);

// swiglu_forward: out[i] = silu(gate[i]) * up[i], silu(a) = a * sigmoid(a). out may alias neither input.
void swiglu_forward(const float* gate, const float* up, float* out, int64_t n);
// swiglu_backward: dgate[i] += dout[i] * up[i] * silu'(gate[i]); dup[i] += dout[i] * silu(gate[i]).
void swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n);

// residual_forward: out[i] = a[i] + b[i]. out may alias a.
void residual_forward(const float* a, const float* b, float* out, int64_t n);
// residual_backward: da[i] += dout[i]; db[i] += dout[i].
void residual_backward(const float* dout, float* da, float* db, int64_t n);

}  // namespace duet::train
