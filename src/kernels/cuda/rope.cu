// rope_qkv_write: everything between the QKV projection and attention in one
// kernel: bias, per-head q/k RMSNorm (qwen3), RoPE, and the K/V cache write.
// Decode of small models without q/k norm skips it: the QKV gemv does the same
// work in its epilogue (GemvOutput::RopeQkvWrite), one launch less per layer.
#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rope.cuh"

namespace duet::cuda {
namespace {

constexpr int kRopeWarps = 4;

// Dims (2p, 2p + 1) of row `at` of the projection.
template <bool kBf16In>
__device__ __forceinline__ float2 load_qkv_pair(const RopeQkvArgs& a, int64_t at) {
  if constexpr (kBf16In) return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(static_cast<const bf16*>(a.qkv) + at));
  else return *reinterpret_cast<const float2*>(static_cast<const float*>(a.qkv) + at);
}

// Decode (T <= kGemvMaxRows, f32 input): one block of Dh threads per (head of the fused q|k|v row, token),
// the shortest dependency chain for a handful of rows (the warp kernel below was 1-2% slower per
// llama2-7b decode step).
__global__ void rope_qkv_write_block_kernel(RopeQkvArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ float vals[];  // [Dh]
  __shared__ float red[4];
  const int head = blockIdx.x, t = blockIdx.y, d = threadIdx.x;
  const int Dh = a.Dh;
  const int col = head * Dh + d;
  float v = static_cast<const float*>(a.qkv)[static_cast<int64_t>(t) * (a.H + 2 * a.Hkv) * Dh + col];
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
    const float partner = vals[d ^ 1];
    const float2 r = d % 2 == 0 ? rope_pair(v, partner, a, pos, d / 2) : rope_pair(partner, v, a, pos, d / 2);
    v = d % 2 == 0 ? r.x : r.y;
  }
  const int slot = is_q ? 0 : a.slot[t];  // q rows need no slot: one dependent load less
  *qkv_destination(a, t, head, d, slot, pos) = __float2bfloat16(v);
}

// Prompts: one warp per (token, head of the fused q|k|v row); lane holds the RoPE pairs (2p, 2p+1) for
// p = lane + 32 j, so each pair rotates in registers and moves as one 4- or 8-byte access. Warps stride
// over the T x heads items, so a prompt runs a few thousand blocks rather than one tiny block per item.
template <bool kBf16In>
__global__ __launch_bounds__(kRopeWarps * 32) void rope_qkv_write_kernel(RopeQkvArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  constexpr int kMaxPairsPerLane = 2;  // Dh <= 128
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int Dh = a.Dh, pairs = Dh / 2;
  const int heads = a.H + 2 * a.Hkv, width = heads * Dh;
  const int64_t items = static_cast<int64_t>(a.T) * heads;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kRopeWarps + warp; item < items;
       item += static_cast<int64_t>(gridDim.x) * kRopeWarps) {
    const int t = static_cast<int>(item / heads), head = static_cast<int>(item % heads);
    const bool is_q = head < a.H, is_k = !is_q && head < a.H + a.Hkv;
    const int64_t base = static_cast<int64_t>(t) * width + head * Dh;
    float2 v[kMaxPairsPerLane];
#pragma unroll
    for (int j = 0; j < kMaxPairsPerLane; ++j) {
      const int p = lane + 32 * j;
      if (p < pairs) {
        v[j] = load_qkv_pair<kBf16In>(a, base + 2 * p);
        if (a.bias) {
          const float2 b = *reinterpret_cast<const float2*>(a.bias + head * Dh + 2 * p);
          v[j].x += b.x;
          v[j].y += b.y;
        }
      }
    }
    const int pos = a.pos[t], slot = a.slot[t];
    if (is_q || is_k) {
      const float* gain = is_q ? a.q_norm : a.k_norm;
      if (gain) {
        float ss = 0;
#pragma unroll
        for (int j = 0; j < kMaxPairsPerLane; ++j) {
          if (lane + 32 * j < pairs) ss += v[j].x * v[j].x + v[j].y * v[j].y;
        }
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float inv = rsqrtf(ss / Dh + a.eps);
        const float* g = gain + (is_q ? head : head - a.H) * Dh;
#pragma unroll
        for (int j = 0; j < kMaxPairsPerLane; ++j) {
          const int p = lane + 32 * j;
          if (p < pairs) {
            const float2 gp = *reinterpret_cast<const float2*>(g + 2 * p);
            v[j] = make_float2(v[j].x * inv * gp.x, v[j].y * inv * gp.y);
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kMaxPairsPerLane; ++j) {
        const int p = lane + 32 * j;
        if (p < pairs) v[j] = rope_pair(v[j].x, v[j].y, a, pos, p);
      }
    }
#pragma unroll
    for (int j = 0; j < kMaxPairsPerLane; ++j) {
      const int p = lane + 32 * j;
      if (p < pairs) {
        *reinterpret_cast<__nv_bfloat162*>(qkv_destination(a, t, head, 2 * p, slot, pos)) =
            __floats2bfloat162_rn(v[j].x, v[j].y);
      }
    }
  }
}

}  // namespace

Status rope_qkv_write(const RopeQkvArgs& args, cudaStream_t stream) {
  if (args.Dh % 32 != 0 || args.Dh > 128) return make_error("rope_qkv_write: head_dim ", args.Dh, " unsupported (expected 32, 64, 96 or 128)");
  if (args.T <= kGemvMaxRows && !args.qkv_bf16) {
    const dim3 grid(args.H + 2 * args.Hkv, args.T);
    DUET_TRY(launch_kernel(rope_qkv_write_block_kernel, grid, dim3(args.Dh), args.Dh * sizeof(float), stream, args));
    return ok_status();
  }
  const int64_t items = static_cast<int64_t>(args.T) * (args.H + 2 * args.Hkv);
  const int blocks = static_cast<int>(std::min<int64_t>((items + kRopeWarps - 1) / kRopeWarps, 4096));
  auto kernel = args.qkv_bf16 ? rope_qkv_write_kernel<true> : rope_qkv_write_kernel<false>;
  DUET_TRY(launch_kernel(kernel, dim3(blocks), dim3(kRopeWarps * 32), 0, stream, args));
  return ok_status();
}

}  // namespace duet::cuda
