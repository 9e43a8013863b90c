// Device helpers shared by rope_qkv_write (rope.cu) and the gemv epilogue that
// fuses the same work into the QKV projection at decode (gemv.cu).
#pragma once

#include "kernels/cuda/ops.cuh"

namespace duet::cuda {

// The pair (x0, x1) rotated by the angle whose cosine and sine are c and s.
__device__ __forceinline__ float2 rotate_pair(float x0, float x1, float c, float s) {
  return make_float2(x0 * c - x1 * s, x0 * s + x1 * c);
}

// RoPE on one (2i, 2i+1) pair of a head at position pos, from the cos/sin table entries for frequency i
// (the device layout is always adjacent pairs; see RopeQkvArgs).
__device__ __forceinline__ float2 rope_pair(float x0, float x1, const RopeQkvArgs& a, int pos, int i) {
  const int half = a.Dh / 2;
  return rotate_pair(x0, x1, a.cos[static_cast<int64_t>(pos) * half + i], a.sin[static_cast<int64_t>(pos) * half + i]);
}

// Where dim d of fused-qkv head `head` of row t goes: q [T,H,Dh], or the K/V cache at (slot, pos), the
// row's sequence slot and position (slot[t], pos[t], passed in by callers that already hold them).
__device__ __forceinline__ bf16* qkv_destination(const RopeQkvArgs& a, int t, int head, int d, int slot, int pos) {
  if (head < a.H) return a.q + (static_cast<int64_t>(t) * a.H + head) * a.Dh + d;
  const bool is_k = head < a.H + a.Hkv;
  const int g = head - a.H - (is_k ? 0 : a.Hkv);
  bf16* cache = is_k ? a.k_cache : a.v_cache;
  return cache + ((static_cast<int64_t>(slot) * a.Hkv + g) * a.S + pos) * a.Dh + d;
}

}  // namespace duet::cuda
