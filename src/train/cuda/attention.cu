// Causal GQA attention forward/backward on the GPU (train/cpu/attention.cpp),
// storing the probabilities att [B,H,T,T] like the CPU reference (T is a
// training sequence, <= a few thousand). The four products are cuBLAS
// strided-batched GEMMs (TF32): for each sequence b and each index r of a
// query head within its KV group, one call covers the Hkv heads h = g*G + r
// (G = H/Hkv): q rows step G*Dh between heads, k/v rows Dh between groups.
// The full T x T scores are computed and the softmax zeroes s > t, so the
// products need no mask (twice the causal FLOPs; at T = 256..512 and Dh = 64
// these GEMMs are a small part of a layer's time).
//   S = Q K^T / sqrt(Dh);  P = softmax_causal(S);  out = P V
//   dP = dout V^T;  dS = P (dP - rowsum(P dP));  dQ += dS K / sqrt(Dh);  dK += dS^T Q / sqrt(Dh);  dV += P^T dout
#include <cmath>

#include "train/cuda/ops.cuh"
#include "train/cuda/reduce.cuh"

namespace duet::train::cuda {
namespace {

// One strided-batched GEMM over the Hkv groups, column-major operands as cuBLAS sees them.
struct Operand {
  const float* ptr;
  int ld;
  long long stride;
};

Status batched(const TrainContext& ctx, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
               Operand a, Operand b, float beta, float* c, int ldc, long long stride_c, int count) {
  DUET_CUDA_TRY(cublasSetStream(ctx.blas, ctx.stream));
  DUET_CUDA_TRY(cublasGemmStridedBatchedEx(ctx.blas, ta, tb, m, n, k, &alpha, a.ptr, CUDA_R_32F, a.ld, a.stride, b.ptr,
                                           CUDA_R_32F, b.ld, b.stride, &beta, c, CUDA_R_32F, ldc, stride_c, count,
                                           CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  return ok_status();
}

// softmax_causal_kernel: row (b,h,t) = blockIdx.x of att [B*H*T, T] in place: softmax over s <= t, zero beyond.
__global__ void softmax_causal_kernel(float* att, int T) {
  const int64_t row = blockIdx.x;
  const int t = static_cast<int>(row % T);
  float* a = att + row * T;
  float m = -INFINITY;
  for (int s = threadIdx.x; s <= t; s += blockDim.x) m = fmaxf(m, a[s]);
  m = block_max(m);
  float sum = 0;
  for (int s = threadIdx.x; s <= t; s += blockDim.x) {
    const float e = __expf(a[s] - m);
    a[s] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum(sum);
  for (int s = threadIdx.x; s < T; s += blockDim.x) a[s] = s <= t ? a[s] * inv : 0.0f;
}

// softmax_backward_kernel: datt row <- att * (datt - sum_s att datt), in place; zero for s > t.
__global__ void softmax_backward_kernel(const float* att, float* datt, int T) {
  const int64_t row = blockIdx.x;
  const int t = static_cast<int>(row % T);
  const float* a = att + row * T;
  float* d = datt + row * T;
  float dot = 0;
  for (int s = threadIdx.x; s <= t; s += blockDim.x) dot += a[s] * d[s];
  dot = block_sum(dot);
  for (int s = threadIdx.x; s < T; s += blockDim.x) d[s] = s <= t ? a[s] * (d[s] - dot) : 0.0f;
}

}  // namespace

Status attention_forward(const TrainContext& ctx, const float* q, const float* k, const float* v, float* out,
                         float* att, int B, int T, int H, int Hkv, int Dh) {
  if (B == 0 || T == 0) return ok_status();
  const int G = H / Hkv, ldq = H * Dh, ldk = Hkv * Dh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  const long long TT = static_cast<long long>(T) * T;
  for (int b = 0; b < B; ++b) {
    const int64_t qo = static_cast<int64_t>(b) * T * ldq, ko = static_cast<int64_t>(b) * T * ldk;
    for (int r = 0; r < G; ++r) {
      float* S = att + (static_cast<int64_t>(b) * H + r) * TT;
      // S[t,s] = q[t,:] . k[s,:]: column-major S^T[s,t] = op_T(K)[s,Dh] Q^T[Dh,t].
      DUET_TRY(batched(ctx, CUBLAS_OP_T, CUBLAS_OP_N, T, T, Dh, scale, {k + ko, ldk, Dh},
                       {q + qo + r * Dh, ldq, static_cast<long long>(G) * Dh}, 0.0f, S, T, G * TT, Hkv));
    }
  }
  softmax_causal_kernel<<<static_cast<unsigned>(static_cast<int64_t>(B) * H * T), 256, 0, ctx.stream>>>(att, T);
  DUET_CUDA_TRY(cudaGetLastError());
  for (int b = 0; b < B; ++b) {
    const int64_t qo = static_cast<int64_t>(b) * T * ldq, ko = static_cast<int64_t>(b) * T * ldk;
    for (int r = 0; r < G; ++r) {
      const float* P = att + (static_cast<int64_t>(b) * H + r) * TT;
      // out^T[Dh,t] = V^T[Dh,s] P^T[s,t].
      DUET_TRY(batched(ctx, CUBLAS_OP_N, CUBLAS_OP_N, Dh, T, T, 1.0f, {v + ko, ldk, Dh}, {P, T, G * TT}, 0.0f,
                       out + qo + r * Dh, ldq, static_cast<long long>(G) * Dh, Hkv));
    }
  }
  return ok_status();
}

Status attention_backward(const TrainContext& ctx, const float* dout, const float* q, const float* k, const float* v,
                          const float* att, float* datt, float* dq, float* dk, float* dv, int B, int T, int H, int Hkv,
                          int Dh) {
  if (B == 0 || T == 0) return ok_status();
  const int G = H / Hkv, ldq = H * Dh, ldk = Hkv * Dh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  const long long TT = static_cast<long long>(T) * T, qs = static_cast<long long>(G) * Dh;
  for (int b = 0; b < B; ++b) {
    const int64_t qo = static_cast<int64_t>(b) * T * ldq, ko = static_cast<int64_t>(b) * T * ldk;
    for (int r = 0; r < G; ++r) {
      const int64_t ao = (static_cast<int64_t>(b) * H + r) * TT;
      // dP[t,s] = dout[t,:] . v[s,:]
      DUET_TRY(batched(ctx, CUBLAS_OP_T, CUBLAS_OP_N, T, T, Dh, 1.0f, {v + ko, ldk, Dh}, {dout + qo + r * Dh, ldq, qs},
                       0.0f, datt + ao, T, G * TT, Hkv));
      // dV^T[Dh,s] += dout^T[Dh,t] P[t,s] (P's buffer read column-major is P^T: transpose it back).
      DUET_TRY(batched(ctx, CUBLAS_OP_N, CUBLAS_OP_T, Dh, T, T, 1.0f, {dout + qo + r * Dh, ldq, qs},
                       {att + ao, T, G * TT}, 1.0f, dv + ko, ldk, Dh, Hkv));
    }
  }
  softmax_backward_kernel<<<static_cast<unsigned>(static_cast<int64_t>(B) * H * T), 256, 0, ctx.stream>>>(att, datt,
                                                                                                          T);
  DUET_CUDA_TRY(cudaGetLastError());
  for (int b = 0; b < B; ++b) {
    const int64_t qo = static_cast<int64_t>(b) * T * ldq, ko = static_cast<int64_t>(b) * T * ldk;
    for (int r = 0; r < G; ++r) {
      const int64_t ao = (static_cast<int64_t>(b) * H + r) * TT;
      // dQ^T[Dh,t] += K^T[Dh,s] dS^T[s,t]
      DUET_TRY(batched(ctx, CUBLAS_OP_N, CUBLAS_OP_N, Dh, T, T, scale, {k + ko, ldk, Dh}, {datt + ao, T, G * TT}, 1.0f,
                       dq + qo + r * Dh, ldq, qs, Hkv));
      // dK^T[Dh,s] += Q^T[Dh,t] dS[t,s]
      DUET_TRY(batched(ctx, CUBLAS_OP_N, CUBLAS_OP_T, Dh, T, T, scale, {q + qo + r * Dh, ldq, qs},
                       {datt + ao, T, G * TT}, 1.0f, dk + ko, ldk, Dh, Hkv));
    }
  }
  return ok_status();
}

}  // namespace duet::train::cuda
