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
constexpr int kRunHeads = 8;  // heads per warp in the prompt kernel

// Dims [at, at + 4) of the projection, as floats.
template <bool kBf16In>
__device__ __forceinline__ float4 load_qkv_quad(const RopeQkvArgs& a, int64_t at) {
  if constexpr (kBf16In) {
    const uint2 u = *reinterpret_cast<const uint2*>(static_cast<const bf16*>(a.qkv) + at);
    const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
    const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
    return make_float4(lo.x, lo.y, hi.x, hi.y);
  } else {
    return *reinterpret_cast<const float4*>(static_cast<const float*>(a.qkv) + at);
  }
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

// Prompts: one warp per (token, run of kRunHeads heads of the fused q|k|v row); lane l holds dims [4l, 4l + 4)
// of each head, two RoPE pairs, so every access is 8 or 16 bytes. A run's position, slot and cos/sin are
// loaded once for all its heads, and the heads' loads are all in flight together: the chain per warp is
// two round trips (row and position, then cos/sin) for 8 heads. With a warp per (token, head) and two heads
// in flight it was two round trips per 2 heads, and HBM ran at ~1.8 TB/s (1.79 ms per 2048-token llama2-7b
// prompt). With skip_q the runs cover the k and v heads only.
template <bool kBf16In>
__global__ __launch_bounds__(kRopeWarps * 32) void rope_qkv_write_kernel(RopeQkvArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int Dh = a.Dh, d0 = 4 * lane;
  const bool active = d0 < Dh;
  const int heads = a.H + 2 * a.Hkv, width = heads * Dh;
  const int first = a.skip_q ? a.H : 0, runs = (heads - first + kRunHeads - 1) / kRunHeads;
  const int64_t items = static_cast<int64_t>(a.T) * runs;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kRopeWarps + warp; item < items;
       item += static_cast<int64_t>(gridDim.x) * kRopeWarps) {
    const int t = static_cast<int>(item / runs), h0 = first + static_cast<int>(item % runs) * kRunHeads;
    const int n = min(kRunHeads, heads - h0);
    float4 v[kRunHeads];
#pragma unroll
    for (int u = 0; u < kRunHeads; ++u) {  // every head's load first
      v[u] = active && u < n ? load_qkv_quad<kBf16In>(a, static_cast<int64_t>(t) * width + (h0 + u) * Dh + d0)
                             : make_float4(0, 0, 0, 0);
    }
    const int pos = a.pos[t], slot = a.slot[t];
    float2 c = make_float2(1, 1), s = make_float2(0, 0);
    if (active && h0 < a.H + a.Hkv) {  // the run holds q or k heads
      const int64_t at = static_cast<int64_t>(pos) * (Dh / 2) + d0 / 2;
      c = *reinterpret_cast<const float2*>(a.cos + at);
      s = *reinterpret_cast<const float2*>(a.sin + at);
    }
#pragma unroll
    for (int u = 0; u < kRunHeads; ++u) {
      if (u >= n) break;  // warp-uniform
      const int head = h0 + u;
      const bool is_q = head < a.H, is_k = !is_q && head < a.H + a.Hkv;
      if (a.bias && active) {
        const float4 b = *reinterpret_cast<const float4*>(a.bias + head * Dh + d0);
        v[u] = make_float4(v[u].x + b.x, v[u].y + b.y, v[u].z + b.z, v[u].w + b.w);
      }
      if (is_q || is_k) {
        const float* gain = is_q ? a.q_norm : a.k_norm;
        if (gain) {
          float ss = v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
          for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
          const float inv = rsqrtf(ss / Dh + a.eps);
          if (active) {
            const float4 g = *reinterpret_cast<const float4*>(gain + (is_q ? head : head - a.H) * Dh + d0);
            v[u] = make_float4(v[u].x * inv * g.x, v[u].y * inv * g.y, v[u].z * inv * g.z, v[u].w * inv * g.w);
          }
        }
        const float2 r0 = rotate_pair(v[u].x, v[u].y, c.x, s.x), r1 = rotate_pair(v[u].z, v[u].w, c.y, s.y);
        v[u] = make_float4(r0.x, r0.y, r1.x, r1.y);
      }
      if (active) {
        const __nv_bfloat162 lo = __floats2bfloat162_rn(v[u].x, v[u].y), hi = __floats2bfloat162_rn(v[u].z, v[u].w);
        uint2 packed;
        packed.x = *reinterpret_cast<const unsigned*>(&lo);
        packed.y = *reinterpret_cast<const unsigned*>(&hi);
        *reinterpret_cast<uint2*>(qkv_destination(a, t, head, d0, slot, pos)) = packed;
      }
    }
  }
}

}  // namespace

Status rope_qkv_write(const RopeQkvArgs& args, cudaStream_t stream) {
  if (args.Dh % 32 != 0 || args.Dh > 128) {
    return make_error("rope_qkv_write: head_dim ", args.Dh, " unsupported (expected 32, 64, 96 or 128)");
  }
  const int first = args.skip_q ? args.H : 0;
  if (args.T <= kGemvMaxRows && !args.qkv_bf16) {
    if (args.skip_q) return make_error("rope_qkv_write: skip_q is for prompts (bf16 input)");
    const dim3 grid(args.H + 2 * args.Hkv, args.T);
    DUET_TRY(launch_kernel(rope_qkv_write_block_kernel, grid, dim3(args.Dh), args.Dh * sizeof(float), stream, args));
    return ok_status();
  }
  const int64_t items = static_cast<int64_t>(args.T) * ((args.H + 2 * args.Hkv - first + kRunHeads - 1) / kRunHeads);
  const int blocks = static_cast<int>(std::min<int64_t>((items + kRopeWarps - 1) / kRopeWarps, 1 << 16));
  auto kernel = args.qkv_bf16 ? rope_qkv_write_kernel<true> : rope_qkv_write_kernel<false>;
  DUET_TRY(launch_kernel(kernel, dim3(blocks), dim3(kRopeWarps * 32), 0, stream, args));
  return ok_status();
}

}  // namespace duet::cuda
