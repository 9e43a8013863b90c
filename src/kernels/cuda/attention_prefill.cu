// attention_prefill: causal flash attention for a prompt on tensor cores, after FlashAttention-2.
//
// One block of 4 warps per (128-query tile, head); each warp owns 32 query rows as two m16 tiles, so every
// K or V fragment read from shared memory feeds two mma.sync.m16n8k16 (bf16 in, fp32 accumulate): the
// shared-memory reads per mma, more than the mma rate, bounded the 64-query tile this replaces. The Q tile
// is staged in shared memory once and re-read with ldmatrix for every key tile: in registers it would take
// 64 more per thread next to the 128 fp32 O accumulators (Dh=128), over the 255 that 2 blocks per SM
// allow. K fragments come from ldmatrix, V from ldmatrix.trans; K/V tiles are multi-buffered with
// cp.async, rows padded by 16 bytes so the 8 rows of each ldmatrix hit distinct banks. The online softmax
// stays in registers in the log2 domain (scale prefolded with log2 e: one FFMA + EX2 per score), and O is
// rescaled only when a row max grows by more than a factor 2^8 (see kMaxGrowth). The causal/tail mask is applied
// only on tiles crossing a warp's diagonal, and a warp skips the math of tiles wholly above it. Query tiles
// are issued longest first across all heads (grid x = head, y = reversed tile): the causal triangle makes
// late tiles the heaviest, so they must not be left for the last wave.
// On compute capability 9.0, head dim 128 runs attention_prefill_wgmma.cu instead (warpgroup MMA; llama2-7b
// 2048-token prompt: attention 4.43-4.63 -> 3.60-3.76 ms over 32 layers on an H200).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention_prefill_common.cuh"
#include "kernels/cuda/attention_prefill_wgmma.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

using namespace flash;

constexpr int kBlockQ = 128, kWarps = 4, kThreads = 32 * kWarps, kPad = 8;
constexpr int kWarpRows = kBlockQ / kWarps;  // 32: two m16 tiles per warp

// Keys per K/V tile (kBlockK) and tiles in flight (kStages). Dh=128 takes 32-key tiles: 32 scores per
// thread instead of 64 leave ptxas room to schedule (3.54 -> 3.43 ms as above; 64-key tiles stay ahead on a
// 512-token chunk after 1536 cached tokens, 1.94 vs 2.21 ms). Dh=64 has the registers for 64-key tiles,
// which halve the Q re-reads per key. 2 or 3 stages measure the same for Dh=128, 3 is 1.5% ahead for Dh=64.
template <int kDh>
struct KeyTiling;
template <>
struct KeyTiling<64> {
  static constexpr int kBlockK = 64, kStages = 3;
};
template <>
struct KeyTiling<128> {
  static constexpr int kBlockK = 32, kStages = 3;
};

__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Lane l supplies the shared address of row l % 8 of matrix l / 8; r[i] is matrix i in mma fragment order.
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <int kDh>
__global__ __launch_bounds__(kThreads, 2) void attention_prefill_kernel(const bf16* __restrict__ q,
                                                                        const bf16* __restrict__ k,
                                                                        const bf16* __restrict__ v,
                                                                        bf16* __restrict__ out, int T, int pos0,
                                                                        int H, int Hkv, int S, float scale_log2) {
  pdl_wait();
  pdl_launch_dependents();
  constexpr int kBlockK = KeyTiling<kDh>::kBlockK, kStages = KeyTiling<kDh>::kStages;
  constexpr uint32_t kEltBytes = sizeof(bf16);
  constexpr uint32_t kRowBytes = (kDh + kPad) * kEltBytes;  // 16 mod 128: ldmatrix rows spread over all banks
  constexpr uint32_t kTileBytes = kBlockK * kRowBytes;
  constexpr int kChunks = kDh / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // [Q: kBlockQ rows][stage 0: K, V] ... [stage kStages-1: K, V], each K/V tile kBlockK rows.
  const uint32_t qs = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t kvs = qs + kBlockQ * kRowBytes;

  const int qb = gridDim.y - 1 - blockIdx.y;
  const int h = blockIdx.x, g = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, c = lane % 4;
  const int n_keys = pos0 + min(T, (qb + 1) * kBlockQ);  // keys visible to the block's last row
  const int n_tiles = (n_keys + kBlockK - 1) / kBlockK;
  const int64_t q_stride = static_cast<int64_t>(H) * kDh;
  const bf16* qbase = q + static_cast<int64_t>(qb) * kBlockQ * q_stride + static_cast<int64_t>(h) * kDh;

  // Each thread copies 16-byte chunk column ld_col of rows ld_row, ld_row + kLdRows, ... of every tile.
  constexpr int kLdRows = kThreads / kChunks;
  const int ld_row = threadIdx.x / kChunks, ld_col = threadIdx.x % kChunks * 8;
  const uint32_t ld_dst = ld_row * kRowBytes + ld_col * kEltBytes;
#pragma unroll
  for (int i = 0; i < kBlockQ / kLdRows; ++i) {
    const int r = ld_row + i * kLdRows;
    const bool valid = qb * kBlockQ + r < T;
    cp_async_16(qs + ld_dst + i * kLdRows * kRowBytes, qbase + (valid ? r * q_stride + ld_col : 0), valid);
  }
  // Element offsets in k and v as 32-bit (the launcher checks Hkv * S * Dh < 2^31): 64-bit pointers
  // kept live across the loop would push the Dh=128 kernel past 255 registers.
  const int kv_src = (g * S + ld_row) * kDh + ld_col;
  // Tile t goes to stage t % kStages; one commit group per tile (empty past the last) keeps the counting simple.
  auto load_tile = [&](int t) {
    const uint32_t stage = kvs + t % kStages * 2 * kTileBytes;
#pragma unroll
    for (int i = 0; i < kBlockK / kLdRows; ++i) {
      if (t >= n_tiles) break;
      const bool valid = t * kBlockK + ld_row + i * kLdRows < n_keys;
      const int off = kv_src + (valid ? (t * kBlockK + i * kLdRows) * kDh : 0);
      const uint32_t dst = stage + ld_dst + i * kLdRows * kRowBytes;
      cp_async_16(dst, k + off, valid);
      cp_async_16(dst + kTileBytes, v + off, valid);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };

  // ldmatrix row addresses of this lane in a 16x16 block. lane_off: matrices (rows 0-7 | 8-15) x
  // (cols 0-7 | 8-15), rows first; for Q (row = query) that is the A fragment a0..a3, for V with .trans
  // (row = key) b0, b1 of dims 0-7, then of 8-15. k_off: columns first, so that K (row = key) gives b0, b1
  // of keys 0-7, then of keys 8-15: each mma's B pair in adjacent registers, no moves.
  const uint32_t lane_off = ((lane / 8 & 1) * 8 + lane % 8) * kRowBytes + lane / 16 * 16;
  const uint32_t k_off = (lane / 16 * 8 + lane % 8) * kRowBytes + (lane / 8 & 1) * 16;
  const uint32_t q_lane = qs + warp * kWarpRows * kRowBytes + lane_off;

  const int warp_row0 = qb * kBlockQ + warp * kWarpRows;
  const int warp_pos0 = pos0 + warp_row0;  // position of the warp's first row

  float o[2][kDh / 8][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int n = 0; n < kDh / 8; ++n) o[mi][n][0] = o[mi][n][1] = o[mi][n][2] = o[mi][n][3] = 0;
  // Running max (raw score units) and partial row sums (this thread's columns only) of rows
  // warp_row0 + 16 mi + 8 hf + gr.
  float m[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}}, l[2][2] = {{0, 0}, {0, 0}};

#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) load_tile(t);  // the Q tile joins tile 0's group
  for (int t = 0; t < n_tiles; ++t) {
    asm volatile("cp.async.wait_group %0;" ::"n"(kStages - 2) : "memory");
    // Tile t is now visible to all warps, and all are done with tile t - 1, whose stage the load of tile
    // t + kStages - 1 reuses: one barrier per tile, kStages - 1 tiles in flight behind the math.
    __syncthreads();
    load_tile(t + kStages - 1);
    const int kb = t * kBlockK;
    if (kb > warp_pos0 + kWarpRows - 1) continue;  // above the diagonal of all the warp's rows
    const uint32_t stage = kvs + t % kStages * 2 * kTileBytes;

    float s[2][kBlockK / 8][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int j = 0; j < kBlockK / 8; ++j) s[mi][j][0] = s[mi][j][1] = s[mi][j][2] = s[mi][j][3] = 0;
#pragma unroll
    for (int kk = 0; kk < kDh / 16; ++kk) {
      uint32_t a[2][4];
      ldmatrix_x4(a[0], q_lane + kk * 32);
      ldmatrix_x4(a[1], q_lane + 16 * kRowBytes + kk * 32);
#pragma unroll
      for (int jp = 0; jp < kBlockK / 16; ++jp) {
        uint32_t b[4];
        ldmatrix_x4(b, stage + k_off + jp * 16 * kRowBytes + kk * 32);
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          mma_bf16(s[mi][2 * jp], a[mi], b[0], b[1]);
          mma_bf16(s[mi][2 * jp + 1], a[mi], b[2], b[3]);
        }
      }
    }
    // Only tiles reaching past the warp's first row's diagonal (or past n_keys, which lies beyond it) hold
    // scores some row of the warp must not see. Rows past T see all n_keys keys; their output is dropped.
    if (kb + kBlockK - 1 > warp_pos0) {
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int j = 0; j < kBlockK / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = kb + j * 8 + 2 * c + (e & 1);
            if (key > min(warp_pos0 + mi * 16 + (e >> 1) * 8 + gr, n_keys - 1)) s[mi][j][e] = -INFINITY;
          }
    }

    // Online softmax. Tile maxima per row (over the quad of lanes sharing the row), and a warp vote on
    // whether any row's max must be raised (see kMaxGrowth).
    float mx[2][2];
    bool grow = false;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        float x = -INFINITY;
#pragma unroll
        for (int j = 0; j < kBlockK / 8; ++j) x = fmaxf(x, fmaxf(s[mi][j][2 * hf], s[mi][j][2 * hf + 1]));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
        mx[mi][hf] = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
        grow |= (mx[mi][hf] - m[mi][hf]) * scale_log2 > kMaxGrowth;  // false for a fully masked row (-inf)
      }
    }
    // Always taken on the first tile (m = -inf); key 0 is in it and visible to every row, so m is finite after.
    if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const float m_new = fmaxf(m[mi][hf], mx[mi][hf]);
          const float corr = fast_exp2((m[mi][hf] - m_new) * scale_log2);
          m[mi][hf] = m_new;
          l[mi][hf] *= corr;
#pragma unroll
          for (int n = 0; n < kDh / 8; ++n) {
            o[mi][n][2 * hf] *= corr;
            o[mi][n][2 * hf + 1] *= corr;
          }
        }
      }
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const float neg_max = -m[mi][hf] * scale_log2;
#pragma unroll
        for (int j = 0; j < kBlockK / 8; ++j) {
          s[mi][j][2 * hf] = fast_exp2(fmaf(s[mi][j][2 * hf], scale_log2, neg_max));
          s[mi][j][2 * hf + 1] = fast_exp2(fmaf(s[mi][j][2 * hf + 1], scale_log2, neg_max));
          l[mi][hf] += s[mi][j][2 * hf] + s[mi][j][2 * hf + 1];
        }
      }
    }

    // O += P V, 16 keys per k-step; P's accumulator layout is already the A fragment layout.
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      uint32_t p[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        p[mi][0] = pack_bf16(s[mi][2 * kk][0], s[mi][2 * kk][1]);
        p[mi][1] = pack_bf16(s[mi][2 * kk][2], s[mi][2 * kk][3]);
        p[mi][2] = pack_bf16(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
        p[mi][3] = pack_bf16(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
      }
#pragma unroll
      for (int nn = 0; nn < kDh / 16; ++nn) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, stage + kTileBytes + lane_off + kk * 16 * kRowBytes + nn * 32);
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          mma_bf16(o[mi][2 * nn], p[mi], b[0], b[1]);
          mma_bf16(o[mi][2 * nn + 1], p[mi], b[2], b[3]);
        }
      }
    }
  }

  // Normalise and stage the warp's rows in its own (no longer read) Q rows, so global stores are 16 bytes.
  // No copy is in flight any more (the groups past the last tile are empty); the __syncwarp orders the
  // warp's last ldmatrix reads of these rows before other lanes overwrite them.
  __syncwarp();
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      float sum = l[mi][hf];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = 1.0f / sum;
      const uint32_t row = qs + (warp * kWarpRows + mi * 16 + hf * 8 + gr) * kRowBytes + 4 * c;
#pragma unroll
      for (int n = 0; n < kDh / 8; ++n) {
        const uint32_t val = pack_bf16(o[mi][n][2 * hf] * inv, o[mi][n][2 * hf + 1] * inv);
        asm volatile("st.shared.b32 [%0], %1;" ::"r"(row + n * 16), "r"(val) : "memory");
      }
    }
  }
  __syncwarp();
  bf16* obase = out + static_cast<int64_t>(warp_row0) * q_stride + static_cast<int64_t>(h) * kDh;
#pragma unroll
  for (int e = lane; e < kWarpRows * kChunks; e += 32) {
    const int r = e / kChunks, col = (e % kChunks) * 8;
    if (warp_row0 + r >= T) break;  // rows ascend with e
    uint4 val;
    asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(val.x), "=r"(val.y), "=r"(val.z), "=r"(val.w)
                 : "r"(qs + (warp * kWarpRows + r) * kRowBytes + col * kEltBytes));
    *reinterpret_cast<uint4*>(obase + r * q_stride + col) = val;
  }
}

template <int kDh>
Status launch(const bf16* q, const bf16* k, const bf16* v, bf16* out, int T, int pos0, int H, int Hkv, int S,
              cudaStream_t stream) {
  constexpr int kBlockK = KeyTiling<kDh>::kBlockK, kStages = KeyTiling<kDh>::kStages;
  // Heads vary fastest, so every head's heaviest (last) query tile is issued before any lighter one.
  const dim3 grid(H, (T + kBlockQ - 1) / kBlockQ);
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(kDh));
  const size_t smem = (kBlockQ + kStages * 2 * kBlockK) * (kDh + kPad) * sizeof(bf16);  // Q + K/V stages
  DUET_CUDA_TRY(cudaFuncSetAttribute(attention_prefill_kernel<kDh>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)));
  DUET_TRY(launch_kernel(attention_prefill_kernel<kDh>, grid, dim3(kThreads), smem, stream, q, k, v, out, T, pos0, H,
                         Hkv, S, scale_log2));
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

// The wgmma kernel is built for sm_90a, which runs on compute capability 9.0 alone.
Result<bool> device_has_wgmma() {
  int device = 0, major = 0, minor = 0;
  DUET_CUDA_TRY(cudaGetDevice(&device));
  DUET_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  DUET_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major == 9 && minor == 0;
}

}  // namespace

Result<bool> attention_prefill_rotates_q(int Dh) {
  if (Dh != 128) return false;
  return device_has_wgmma();
}

Status attention_prefill(const bf16* q, const bf16* k, const bf16* v, bf16* out, int T, int pos0, int H, int Hkv,
                         int Dh, int S, cudaStream_t stream, const QueryRope& rope, PrefillAttentionKernel kernel) {
  if (Hkv <= 0 || H % Hkv != 0) return make_error("attention_prefill: H=", H, " not a multiple of Hkv=", Hkv);
  if (static_cast<int64_t>(Hkv) * S * Dh > INT32_MAX) {
    return make_error("attention_prefill: a cache of ", Hkv, " x ", S, " x ", Dh, " elements exceeds 2^31");
  }
  if (kernel != PrefillAttentionKernel::MmaSync && Dh == 128) {
    auto wgmma = device_has_wgmma();
    DUET_TRY(wgmma);
    if (wgmma.value()) return attention_prefill_wgmma(q, k, v, out, T, pos0, H, Hkv, S, rope, stream);
  }
  if (kernel == PrefillAttentionKernel::Wgmma) {
    return make_error("attention_prefill: the wgmma kernel needs head_dim 128 on compute capability 9.0");
  }
  if (rope.cos) return make_error("attention_prefill: rotating q on load needs the wgmma kernel");
  if (Dh == 64) return launch<64>(q, k, v, out, T, pos0, H, Hkv, S, stream);
  if (Dh == 128) return launch<128>(q, k, v, out, T, pos0, H, Hkv, S, stream);
  return make_error("attention_prefill: head_dim ", Dh, " unsupported (expected 64 or 128)");
}

}  // namespace duet::cuda
