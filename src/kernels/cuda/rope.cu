// rope_qkv_write: everything between the QKV projection and attention in one
// kernel: bias, per-head q/k RMSNorm (qwen3), RoPE, and the K/V cache write.
#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

constexpr int kRopeWarps = 4;

// Dimension d of a head after RoPE: v = head[d], head = the whole head's values
// (for d's partner), cos_row/sin_row = the position's table rows [Dh/2].
// Interleaved pairs (2i, 2i+1); otherwise (i, i + Dh/2).
__device__ __forceinline__ float rope_rotate(float v, const float* head, int d, int half, bool interleaved,
                                             const float* cos_row, const float* sin_row) {
  const bool first = interleaved ? (d % 2) == 0 : d < half;
  const int i = interleaved ? d / 2 : d % half;
  const int partner = interleaved ? (first ? d + 1 : d - 1) : (first ? d + half : d - half);
  const float c = cos_row[i], s = sin_row[i], other = head[partner];
  return first ? v * c - other * s : other * s + v * c;
}

// Decode (T <= kGemvMaxRows): one block of Dh threads per (head of the fused q|k|v row, token), the
// shortest dependency chain for a handful of rows.
__global__ void rope_qkv_write_block_kernel(RopeQkvArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float vals[];  // [Dh]
  __shared__ float red[4];
  const int head = blockIdx.x, t = blockIdx.y, d = threadIdx.x;
  const int Dh = a.Dh, half = Dh / 2;
  const int width = (a.H + 2 * a.Hkv) * Dh;
  const int col = head * Dh + d;
  float v = a.qkv[static_cast<int64_t>(t) * width + col];
  if (a.bias) v += a.bias[col];
  const bool is_q = head < a.H, is_k = !is_q && head < a.H + a.Hkv;
  const int pos = a.pos[t];
  if (is_q || is_k) {
    const float* gain = is_q ? a.q_norm : a.k_norm;
    if (gain) {
      float ss = v * v;
      for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      if (d % 32 == 0) red[d / 32] = ss;
      __syncthreads();
      float total = 0;
      for (int i = 0; i < Dh / 32; ++i) total += red[i];
      const int gh = is_q ? head : head - a.H;
      v = v * rsqrtf(total / Dh + a.eps) * gain[gh * Dh + d];
    }
    vals[d] = v;
    __syncthreads();
    v = rope_rotate(v, vals, d, half, a.interleaved, a.cos + static_cast<int64_t>(pos) * half,
                    a.sin + static_cast<int64_t>(pos) * half);
  }
  if (is_q) {
    a.q[(static_cast<int64_t>(t) * a.H + head) * Dh + d] = __float2bfloat16(v);
  } else {
    const int g = is_k ? head - a.H : head - a.H - a.Hkv;
    const int64_t at = ((static_cast<int64_t>(a.slot[t]) * a.Hkv + g) * a.S + pos) * Dh + d;
    (is_k ? a.k_cache : a.v_cache)[at] = __float2bfloat16(v);
  }
}

// One warp per (token, head of the fused q|k|v row); lane holds dims lane + 32 i. Warps stride over the
// T x heads items, so a prompt runs a few thousand blocks rather than one tiny block per item.
__global__ __launch_bounds__(kRopeWarps * 32) void rope_qkv_write_kernel(RopeQkvArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float vals[kRopeWarps][128];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int Dh = a.Dh, half = Dh / 2, per = Dh / 32;
  const int heads = a.H + 2 * a.Hkv, width = heads * Dh;
  const int64_t items = static_cast<int64_t>(a.T) * heads;
  float* sv = vals[warp];
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kRopeWarps + warp; item < items;
       item += static_cast<int64_t>(gridDim.x) * kRopeWarps) {
    const int t = static_cast<int>(item / heads), head = static_cast<int>(item % heads);
    const bool is_q = head < a.H, is_k = !is_q && head < a.H + a.Hkv;
    const int64_t base = static_cast<int64_t>(t) * width + head * Dh;
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < per) {
        const int d = lane + 32 * i;
        v[i] = a.qkv[base + d];
        if (a.bias) v[i] += a.bias[head * Dh + d];
      }
    }
    const int pos = a.pos[t];
    if (is_q || is_k) {
      const float* gain = is_q ? a.q_norm : a.k_norm;
      if (gain) {
        float ss = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) if (i < per) ss += v[i] * v[i];
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const int gh = is_q ? head : head - a.H;
        const float inv = rsqrtf(ss / Dh + a.eps);
#pragma unroll
        for (int i = 0; i < 4; ++i) if (i < per) v[i] = v[i] * inv * gain[gh * Dh + lane + 32 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) if (i < per) sv[lane + 32 * i] = v[i];
      __syncwarp();
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (i < per) {
          v[i] = rope_rotate(v[i], sv, lane + 32 * i, half, a.interleaved, a.cos + static_cast<int64_t>(pos) * half,
                             a.sin + static_cast<int64_t>(pos) * half);
        }
      }
      __syncwarp();  // sv is rewritten by the next item
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < per) {
        const int d = lane + 32 * i;
        if (is_q) {
          a.q[(static_cast<int64_t>(t) * a.H + head) * Dh + d] = __float2bfloat16(v[i]);
        } else {
          const int g = is_k ? head - a.H : head - a.H - a.Hkv;
          const int64_t at = ((static_cast<int64_t>(a.slot[t]) * a.Hkv + g) * a.S + pos) * Dh + d;
          (is_k ? a.k_cache : a.v_cache)[at] = __float2bfloat16(v[i]);
        }
      }
    }
  }
}

}  // namespace

Status rope_qkv_write(const RopeQkvArgs& args, cudaStream_t stream) {
  if (args.Dh % 32 != 0 || args.Dh > 128) return make_error("rope_qkv_write: head_dim ", args.Dh, " unsupported (expected 32, 64, 96 or 128)");
  if (args.T <= kGemvMaxRows) {
    const dim3 grid(args.H + 2 * args.Hkv, args.T);
    DUET_TRY(launch_kernel(rope_qkv_write_block_kernel, grid, dim3(args.Dh), args.Dh * sizeof(float), stream, args));
    return ok_status();
  }
  const int64_t items = static_cast<int64_t>(args.T) * (args.H + 2 * args.Hkv);
  const int blocks = static_cast<int>(std::min<int64_t>((items + kRopeWarps - 1) / kRopeWarps, 4096));
  DUET_TRY(launch_kernel(rope_qkv_write_kernel, dim3(blocks), dim3(kRopeWarps * 32), 0, stream, args));
  return ok_status();
}

}  // namespace duet::cuda
