// rope_qkv_write: everything between the QKV projection and attention in one
// kernel: bias, per-head q/k RMSNorm (qwen3), RoPE, and the K/V cache write.
// One block per (head of the fused q|k|v row, token), Dh threads.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

__global__ void rope_qkv_write_kernel(RopeQkvArgs a) {
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
    // Pair index i and partner dimension for the two styles.
    int i, partner;
    bool first;
    if (a.interleaved) {
      i = d / 2;
      first = (d % 2) == 0;
      partner = first ? d + 1 : d - 1;
    } else {
      i = d % half;
      first = d < half;
      partner = first ? d + half : d - half;
    }
    const float c = a.cos[static_cast<int64_t>(pos) * half + i], s = a.sin[static_cast<int64_t>(pos) * half + i];
    const float other = vals[partner];
    v = first ? v * c - other * s : other * s + v * c;
  }
  if (is_q) {
    a.q[(static_cast<int64_t>(t) * a.H + head) * Dh + d] = __float2bfloat16(v);
  } else {
    const int g = is_k ? head - a.H : head - a.H - a.Hkv;
    const int64_t at = ((static_cast<int64_t>(a.slot[t]) * a.Hkv + g) * a.S + pos) * Dh + d;
    (is_k ? a.k_cache : a.v_cache)[at] = __float2bfloat16(v);
  }
}

}  // namespace

Status rope_qkv_write(const RopeQkvArgs& args, cudaStream_t stream) {
  if (args.Dh % 32 != 0 || args.Dh > 128) return make_error("rope_qkv_write: head_dim ", args.Dh, " unsupported (expected 32, 64, 96 or 128)");
  const dim3 grid(args.H + 2 * args.Hkv, args.T);
  DUET_TRY(launch_kernel(rope_qkv_write_kernel, grid, dim3(args.Dh), args.Dh * sizeof(float), stream, args));
  return ok_status();
}

}  // namespace duet::cuda
