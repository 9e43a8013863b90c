// rope_qkv_write: everything between the QKV projection and attention in one
// kernel: bias, per-head q/k RMSNorm (qwen3), RoPE, and the K/V cache write.
// Decode of models without q/k norm skips it: the QKV gemv does the same work
// in its epilogue (GemvOutput::RopeQkvWrite), one launch less per layer.
#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rope.cuh"

namespace duet::cuda {
namespace {

constexpr int kRopeWarps = 4;

template <bool kBf16In>
__device__ __forceinline__ float load_qkv(const RopeQkvArgs& a, int64_t at) {
  if constexpr (kBf16In) return __bfloat162float(static_cast<const bf16*>(a.qkv)[at]);
  else return static_cast<const float*>(a.qkv)[at];
}

// One warp per (token, head of the fused q|k|v row); lane holds dims lane + 32 i, so a RoPE partner
// (d ^ 1) is one shuffle away. Warps stride over the T x heads items, so a prompt runs a few thousand
// blocks rather than one tiny block per item.
template <bool kBf16In>
__global__ __launch_bounds__(kRopeWarps * 32) void rope_qkv_write_kernel(RopeQkvArgs a) {
  pdl_wait();
  pdl_launch_dependents();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int Dh = a.Dh, per = Dh / 32;
  const int heads = a.H + 2 * a.Hkv, width = heads * Dh;
  const int64_t items = static_cast<int64_t>(a.T) * heads;
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
        v[i] = load_qkv<kBf16In>(a, base + d);
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
      const bool first = lane % 2 == 0;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (i < per) {
          const float partner = __shfl_xor_sync(0xffffffffu, v[i], 1);
          const float2 r = first ? rope_pair(v[i], partner, a, pos, (lane + 32 * i) / 2)
                                 : rope_pair(partner, v[i], a, pos, (lane + 32 * i) / 2);
          v[i] = first ? r.x : r.y;
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (i < per) *qkv_destination(a, t, head, lane + 32 * i, a.slot[t], pos) = __float2bfloat16(v[i]);
    }
  }
}

}  // namespace

Status rope_qkv_write(const RopeQkvArgs& args, cudaStream_t stream) {
  if (args.Dh % 32 != 0 || args.Dh > 128) return make_error("rope_qkv_write: head_dim ", args.Dh, " unsupported (expected 32, 64, 96 or 128)");
  const int64_t items = static_cast<int64_t>(args.T) * (args.H + 2 * args.Hkv);
  const int blocks = static_cast<int>(std::min<int64_t>((items + kRopeWarps - 1) / kRopeWarps, 4096));
  auto kernel = args.qkv_bf16 ? rope_qkv_write_kernel<true> : rope_qkv_write_kernel<false>;
  DUET_TRY(launch_kernel(kernel, dim3(blocks), dim3(kRopeWarps * 32), 0, stream, args));
  return ok_status();
}

}  // namespace duet::cuda
