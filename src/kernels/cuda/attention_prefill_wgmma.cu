// attention_prefill_wgmma: attention_prefill's causal flash attention on Hopper's warpgroup MMA (sm_90a,
// head dim 128), after FlashAttention-3's ping-pong schedule, without its producer warps.
//
// One block of two warpgroups per (128-query tile, head); each warpgroup owns 64 query rows. S = Q K^T is
// one wgmma.m64n128k16 per 16 dims with both operands read from shared memory, O += P V one per 16 keys with
// P straight from the S accumulators (the accumulator layout is the A-fragment layout) and V read transposed
// by the tensor cores: no ldmatrix, no register copies of Q, K or V. Q, K and V tiles sit in shared memory
// in the 128-byte swizzled layout the wgmma descriptors name: a row of 64 dims is 128 bytes, its 16-byte
// chunk i stored at chunk i ^ (row % 8), and dims 64-127 in a second such array behind the first. K/V tiles
// of 128 keys are double-buffered through cp.async by all threads. Warpgroup 1 starts its S only when
// warpgroup 0's is done, so one's softmax overlaps the other's GEMMs. The online softmax is the one of
// attention_prefill.cu (log2 domain, O rescaled only when a row max grows by more than 2^kMaxGrowth).
// Given RoPE tables, the kernel rotates q as it stages it, straight from the QKV projection's rows, and
// rope_qkv_write leaves q alone.
#include "kernels/cuda/attention_prefill_wgmma.cuh"

#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention_prefill_common.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rope.cuh"

namespace duet::cuda {
namespace {

using namespace flash;

constexpr int kDh = 128, kBlockQ = 128, kBlockK = 128, kStages = 2;
constexpr int kThreads = 256;                   // two warpgroups
constexpr uint32_t kRowBytes = 128;             // 64 dims: the span of the 128-byte swizzle
constexpr uint32_t kAtomBytes = 8 * kRowBytes;  // 8 rows: one swizzle pattern, the descriptors' stride
constexpr uint32_t kQHalfBytes = kBlockQ * kRowBytes, kKvHalfBytes = kBlockK * kRowBytes;
constexpr uint32_t kQBytes = 2 * kQHalfBytes, kKvTileBytes = 2 * kKvHalfBytes, kStageBytes = 2 * kKvTileBytes;
// Q + the K/V stages, and room to align the base to a swizzle pattern (dynamic shared memory is 16-byte
// aligned; the swizzle is computed from address bits, so every tile must start on a 1024-byte boundary).
constexpr size_t kSmemBytes = kQBytes + kStages * kStageBytes + kAtomBytes;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

constexpr int kGroupRows = 64;  // query rows per warpgroup (the wgmma M)

// Byte offset of 16-byte chunk ch (dims 8ch..8ch+7) of row r in a swizzled tile of half_bytes per 64 dims.
__device__ __forceinline__ uint32_t swizzled(int r, int ch, uint32_t half_bytes) {
  return (ch >> 3) * half_bytes + r * kRowBytes + (((ch & 7) ^ (r & 7)) << 4);
}

// wgmma shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride byte offsets.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t leading, uint32_t stride) {
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | static_cast<uint64_t>(leading >> 4) << 16 |
         static_cast<uint64_t>(stride >> 4) << 32 | 1ull << 62;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

// The accumulators change behind the compiler's back until wgmma_wait_all: pin them around the wgmmas.
__device__ __forceinline__ void pin(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// The accumulator operand list of the wgmma asm: d[0..63] as %0..%63.
#define DUET_WGMMA_ACC64                                                                                    \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                 \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "                        \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "                        \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define DUET_WGMMA_OUT8(m, i)                                                                               \
  m(d[i]), m(d[i + 1]), m(d[i + 2]), m(d[i + 3]), m(d[i + 4]), m(d[i + 5]), m(d[i + 6]), m(d[i + 7])
#define DUET_WGMMA_OUT64(m)                                                                                 \
  DUET_WGMMA_OUT8(m, 0), DUET_WGMMA_OUT8(m, 8), DUET_WGMMA_OUT8(m, 16), DUET_WGMMA_OUT8(m, 24),             \
      DUET_WGMMA_OUT8(m, 32), DUET_WGMMA_OUT8(m, 40), DUET_WGMMA_OUT8(m, 48), DUET_WGMMA_OUT8(m, 56)
#define DUET_WGMMA_RW "+f"
#define DUET_WGMMA_W "=f"

// d[64x128] (+)= A[64x16] B[16x128], A and B (K-major) in shared memory. The first k-step writes d without
// reading it (scale-d 0, and write-only operands, so the old values are dead to the compiler).
template <bool kAccumulate>
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t a, uint64_t b) {
  if constexpr (kAccumulate) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " DUET_WGMMA_ACC64
                 ", %64, %65, 1, 1, 1, 0, 0;"
                 : DUET_WGMMA_OUT64(DUET_WGMMA_RW)
                 : "l"(a), "l"(b));
  } else {
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " DUET_WGMMA_ACC64
                 ", %64, %65, 0, 1, 1, 0, 0;"
                 : DUET_WGMMA_OUT64(DUET_WGMMA_W)
                 : "l"(a), "l"(b));
  }
}

// d[64x128] += A[64x16] B[16x128], A in registers (4 bf16x2 per thread, the accumulator layout of a
// 64x16 slice), B N-major in shared memory (read transposed).
__device__ __forceinline__ void wgmma_rs_trans_b(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
  asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " DUET_WGMMA_ACC64
               ", {%64, %65, %66, %67}, %68, 1, 1, 1, 1;"
               : DUET_WGMMA_OUT64(DUET_WGMMA_RW)
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}

#undef DUET_WGMMA_ACC64
#undef DUET_WGMMA_OUT8
#undef DUET_WGMMA_OUT64
#undef DUET_WGMMA_RW
#undef DUET_WGMMA_W

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// q rows of q_stride elements, head h at column 128h; k/v [Hkv,S,128]; out [T,H*128]; all bf16: out = causal
// softmax(q k^T / sqrt(128)) v per head. kRopeQ: q is unrotated, and rotated on load with cos/sin [S,64] f32.
template <bool kRopeQ>
__global__ __launch_bounds__(kThreads, 1) void attention_prefill_wgmma_kernel(
    const bf16* __restrict__ q, int64_t q_stride, const float* __restrict__ rope_cos,
    const float* __restrict__ rope_sin, const bf16* __restrict__ k, const bf16* __restrict__ v,
    bf16* __restrict__ out, int T, int pos0, int H, int Hkv, int S, float scale_log2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ unsigned char smem_raw[];
  const uint32_t qs = (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) + kAtomBytes - 1) & ~(kAtomBytes - 1);
  const uint32_t kvs = qs + kQBytes;

  const int qb = gridDim.y - 1 - blockIdx.y;  // heaviest (last) query tiles first
  const int h = blockIdx.x, g = h / (H / Hkv);
  const int group = threadIdx.x / 128, warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;
  const int gr = lane / 4, c = lane % 4;
  const int n_keys = pos0 + min(T, (qb + 1) * kBlockQ);  // keys visible to the block's last row
  const int n_tiles = (n_keys + kBlockK - 1) / kBlockK;
  const int64_t out_stride = static_cast<int64_t>(H) * kDh;

  // Each thread copies 16-byte chunk ld_ch of rows ld_row, ld_row + 16, ... of every tile.
  constexpr int kChunks = kDh / 8, kLdRows = kThreads / kChunks, kQLoads = kBlockQ / kLdRows;
  const int ld_ch = threadIdx.x % kChunks, ld_row = threadIdx.x / kChunks;
  // Tile t goes to stage t % kStages, one commit group per call (empty past the last tile). 32-bit element
  // offsets: the launcher checks Hkv * S * Dh < 2^31.
  auto load_tile = [&](int t) {
    const uint32_t stage = kvs + t % kStages * kStageBytes;
#pragma unroll
    for (int i = 0; i < kBlockK / kLdRows; ++i) {
      if (t >= n_tiles) break;
      const int r = ld_row + i * kLdRows, key = t * kBlockK + r;
      const bool valid = key < n_keys;
      const int off = (g * S + (valid ? key : 0)) * kDh + ld_ch * 8;
      const uint32_t dst = stage + swizzled(r, ld_ch, kKvHalfBytes);
      cp_async_16(dst, k + off, valid);
      cp_async_16(dst + kKvTileBytes, v + off, valid);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  if constexpr (kRopeQ) {
    // K/V tile 0's copies go out before the q loads, which wait in registers. Chunk ld_ch holds RoPE pairs
    // (frequencies) 4 ld_ch .. 4 ld_ch + 3. All q and cos/sin loads are issued, then the rotations go into
    // shared memory (the proxy fence and barrier of the first tile publish them).
    load_tile(0);
    uint4 raw[kQLoads];
    float4 cs[kQLoads], sn[kQLoads];
#pragma unroll
    for (int i = 0; i < kQLoads; ++i) {
      const int row = qb * kBlockQ + ld_row + i * kLdRows, in_row = row < T ? row : 0;
      const int64_t at = static_cast<int64_t>(pos0 + in_row) * (kDh / 2) + ld_ch * 4;
      const bf16* src = q + in_row * q_stride + static_cast<int64_t>(h) * kDh + ld_ch * 8;
      raw[i] = row < T ? *reinterpret_cast<const uint4*>(src) : make_uint4(0, 0, 0, 0);
      cs[i] = *reinterpret_cast<const float4*>(rope_cos + at);
      sn[i] = *reinterpret_cast<const float4*>(rope_sin + at);
    }
#pragma unroll
    for (int i = 0; i < kQLoads; ++i) {
      const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&raw[i]);
      const float c4[4] = {cs[i].x, cs[i].y, cs[i].z, cs[i].w}, s4[4] = {sn[i].x, sn[i].y, sn[i].z, sn[i].w};
      uint32_t rotated[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 pair = __bfloat1622float2(x[j]);
        const float2 r = rotate_pair(pair.x, pair.y, c4[j], s4[j]);
        rotated[j] = pack_bf16(r.x, r.y);
      }
      const uint32_t dst = qs + swizzled(ld_row + i * kLdRows, ld_ch, kQHalfBytes);
      asm volatile("st.shared.v4.b32 [%0], {%1,%2,%3,%4};" ::"r"(dst), "r"(rotated[0]), "r"(rotated[1]),
                   "r"(rotated[2]), "r"(rotated[3])
                   : "memory");
    }
  } else {
#pragma unroll
    for (int i = 0; i < kQLoads; ++i) {
      const int r = ld_row + i * kLdRows, row = qb * kBlockQ + r;
      const bf16* src = q + (row < T ? row * q_stride + static_cast<int64_t>(h) * kDh + ld_ch * 8 : 0);
      cp_async_16(qs + swizzled(r, ld_ch, kQHalfBytes), src, row < T);
    }
    load_tile(0);  // the Q tile joins tile 0's group
  }

  const int group_row0 = qb * kBlockQ + group * kGroupRows;
  const int group_pos0 = pos0 + group_row0;         // position of the warpgroup's first row
  const int row_pos = group_pos0 + warp * 16 + gr;  // this thread's rows: row_pos and row_pos + 8
  const bool group_active = group_row0 < T;
  const uint32_t q_group = qs + group * kGroupRows * kRowBytes;

  // Accumulator element 4j + e: row row_pos + 8 (e / 2), column 8j + 2c + e % 2 (a key of S, a dim of O).
  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int t = 0; t < n_tiles; ++t) {
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    // cp.async writes through the generic proxy, wgmma reads through the async proxy.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    // Tile t is visible to all, and both warpgroups are done with tile t - 1, whose stage tile t + 1 reuses.
    __syncthreads();
    load_tile(t + 1);
    const int kb = t * kBlockK;
    const uint32_t ks = kvs + t % kStages * kStageBytes, vs = ks + kKvTileBytes;
    // Warpgroup 1 issues its S once warpgroup 0's is done, so that one's softmax runs beside the other's
    // GEMMs (ping-pong: attention 3.80 -> 3.60-3.64 ms per llama2-7b 2048-token prompt on an H200).
    // Both take part in the handover on every tile, computing or not.
    if (group == 1) asm volatile("bar.sync 3, 256;" ::: "memory");
    if (!group_active || kb > group_pos0 + kGroupRows - 1) {  // above the warpgroup's diagonal
      if (group == 0) asm volatile("bar.arrive 3, 256;" ::: "memory");
      continue;
    }
    float s[64];
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kDh / 16; ++kk) {
      const uint32_t half = kk / 4, in_row = kk % 4 * 32u;  // 64-dim half, byte offset in the 128-byte row
      const uint64_t a = smem_desc(q_group + half * kQHalfBytes + in_row, 16, kAtomBytes);
      const uint64_t b = smem_desc(ks + half * kKvHalfBytes + in_row, 16, kAtomBytes);
      if (kk == 0) {
        wgmma_ss<false>(s, a, b);
      } else {
        wgmma_ss<true>(s, a, b);
      }
    }
    wgmma_commit();
    wgmma_wait_all();
    pin(s);
    if (group == 0) asm volatile("bar.arrive 3, 256;" ::: "memory");

    // Tiles reaching past the warpgroup's first row's diagonal or past n_keys hold scores to hide.
    if (kb + kBlockK - 1 > group_pos0 || kb + kBlockK > n_keys) {
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = kb + j * 8 + 2 * c + (e & 1);
          if (key > min(row_pos + (e >> 1) * 8, n_keys - 1)) s[4 * j + e] = -INFINITY;
        }
    }
    float mx[2];
    bool grow = false;
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      float x = -INFINITY;
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j) x = fmaxf(x, fmaxf(s[4 * j + 2 * hf], s[4 * j + 2 * hf + 1]));
      x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
      mx[hf] = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
      grow |= (mx[hf] - m[hf]) * scale_log2 > kMaxGrowth;  // always on the first tile (m = -inf)
    }
    if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const float m_new = fmaxf(m[hf], mx[hf]);
        const float corr = fast_exp2((m[hf] - m_new) * scale_log2);
        m[hf] = m_new;
        l[hf] *= corr;
#pragma unroll
        for (int n = 0; n < kDh / 8; ++n) {
          o[4 * n + 2 * hf] *= corr;
          o[4 * n + 2 * hf + 1] *= corr;
        }
      }
    }
    uint32_t p[kBlockK / 16][4];
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const float neg_max = -m[hf] * scale_log2;
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j) {
        const float p0 = fast_exp2(fmaf(s[4 * j + 2 * hf], scale_log2, neg_max));
        const float p1 = fast_exp2(fmaf(s[4 * j + 2 * hf + 1], scale_log2, neg_max));
        l[hf] += p0 + p1;
        // A fragment of keys 16(j/2)..: register hf for keys 0-7 of the 16, 2 + hf for keys 8-15.
        p[j / 2][(j % 2) * 2 + hf] = pack_bf16(p0, p1);
      }
    }

    wgmma_fence();
    pin(o);
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      // Keys 16kk..16kk+15: two 8-key rows of swizzle patterns; the second 64 dims lie a half further on.
      wgmma_rs_trans_b(o, p[kk], smem_desc(vs + kk * 2 * kAtomBytes, kKvHalfBytes, kAtomBytes));
    }
    wgmma_commit();
    wgmma_wait_all();
    pin(o);
  }

  // Normalise and stage the warpgroup's rows in its own Q rows (no wgmma reads them any more once all four
  // warps are past their last wait), then store 16-byte chunks.
  const int bar = 1 + group;  // named barrier of the warpgroup's 128 threads
  asm volatile("bar.sync %0, 128;" ::"r"(bar) : "memory");
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    float sum = l[hf];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = 1.0f / sum;
    const int r = group * kGroupRows + warp * 16 + hf * 8 + gr;
#pragma unroll
    for (int n = 0; n < kDh / 8; ++n) {
      const uint32_t val = pack_bf16(o[4 * n + 2 * hf] * inv, o[4 * n + 2 * hf + 1] * inv);
      asm volatile("st.shared.b32 [%0], %1;" ::"r"(qs + swizzled(r, n, kQHalfBytes) + 4 * c), "r"(val) : "memory");
    }
  }
  asm volatile("bar.sync %0, 128;" ::"r"(bar) : "memory");
  bf16* obase = out + static_cast<int64_t>(group_row0) * out_stride + static_cast<int64_t>(h) * kDh;
  for (int e = threadIdx.x % 128; e < kGroupRows * kChunks; e += 128) {
    const int r = e / kChunks, ch = e % kChunks;
    if (group_row0 + r >= T) break;  // rows ascend with e
    uint4 val;
    asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(val.x), "=r"(val.y), "=r"(val.z), "=r"(val.w)
                 : "r"(qs + swizzled(group * kGroupRows + r, ch, kQHalfBytes)));
    *reinterpret_cast<uint4*>(obase + r * out_stride + ch * 8) = val;
  }
#else
  __trap();  // built for sm_90a only; attention_prefill dispatches here on compute capability 9.0 alone
#endif
}

template <bool kRopeQ>
Status launch(const bf16* q, int64_t q_stride, const QueryRope& rope, const bf16* k, const bf16* v, bf16* out, int T,
              int pos0, int H, int Hkv, int S, cudaStream_t stream) {
  const dim3 grid(H, (T + kBlockQ - 1) / kBlockQ);  // heads fastest: every head's heaviest tile goes first
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(kDh));
  DUET_CUDA_TRY(cudaFuncSetAttribute(attention_prefill_wgmma_kernel<kRopeQ>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemBytes)));
  DUET_TRY(launch_kernel(attention_prefill_wgmma_kernel<kRopeQ>, grid, dim3(kThreads), kSmemBytes, stream, q,
                         q_stride, rope.cos, rope.sin, k, v, out, T, pos0, H, Hkv, S, scale_log2));
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

}  // namespace

Status attention_prefill_wgmma(const bf16* q, const bf16* k, const bf16* v, bf16* out, int T, int pos0, int H,
                               int Hkv, int S, const QueryRope& rope, cudaStream_t stream) {
  if (!rope.cos) return launch<false>(q, static_cast<int64_t>(H) * kDh, rope, k, v, out, T, pos0, H, Hkv, S, stream);
  if (!rope.sin || rope.row_stride < static_cast<int64_t>(H) * kDh || rope.row_stride % 8 != 0) {
    return make_error("attention_prefill: q rows of ", rope.row_stride, " elements cannot hold ", H,
                      " heads of 128 (or are not 16-byte aligned), or no sine table");
  }
  return launch<true>(q, rope.row_stride, rope, k, v, out, T, pos0, H, Hkv, S, stream);
}

}  // namespace duet::cuda
