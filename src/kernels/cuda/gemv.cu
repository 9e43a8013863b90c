// gemv: the decode-time linear map for T <= 8 rows (ops.cuh has the contract).
//
// At decode, a linear map's cost is streaming W once, so the kernel is built to
// keep HBM busy: each warp owns two adjacent rows of W, every lane issues
// kUnroll 16-byte loads per row (8 loads in flight per lane) that skip L1, and
// the T input rows sit in shared memory as bf16. The grid is sized to the
// number of blocks that fit on the chip and loops over row pairs (dealt
// warp-major across the blocks), so the input staging (including the fused
// RMSNorm) is paid once per resident block.
// Every warp issues its first weight loads before waiting on the previous
// kernel (W is never written during a step), so under PDL they overlap that
// kernel's tail, and HBM is busy while the block stages its input.
// Fusions: RMSNorm on the input (F32RmsNorm; Embedding gathers that input
// from the embedding table first, so the step needs no embedding kernel),
// residual add (AddF32), the attention's chunk merge on the out projection's
// input (AttentionPartials: for one sequence over small layers the step then
// has no merge kernel),
// SiLU(gate)*up over interleaved gate/up rows (SiluMulBf16), and for the QKV
// projection bias + RoPE + the q / K / V cache writes (RopeQkvWrite): a warp's
// two adjacent rows are exactly one RoPE pair, so the epilogue can rotate them.
// A residual-add map whose staged input would pass 48 KB splits K across
// blockIdx.y (kSplitStagedBytes): LP's wide layers double the down
// projection's K, and staging 57-76 KB slowed those launches in the graph.
// A latency-bound residual-add map splits further, to short K slices
// (kMaxLatencyBoundSlice), so that no warp runs a long serial chain; a larger
// one splits until its (row pair, K slice) warps fill the chip, so that a
// short-N map (the out and down projections) still has every SM streaming.
// Chosen by the model when gemv_supported(T, K); otherwise cuBLAS (gemm.cu).
// Preconditions: N even, K % 8 == 0, 16-byte aligned W, in and out.
#include <algorithm>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/rope.cuh"

namespace duet::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;
constexpr int kMaxStagedBytes = 160 * 1024;
constexpr int kSplitStagedBytes = 48 * 1024;
constexpr int kMaxLatencyBoundSlice = 32 * 2 * 8;  // K elements: 32 lanes x 2 chunks of 8
constexpr int kMinFillSlice = 32 * kUnroll * 8;     // K elements: one full round of loads per lane

__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

__device__ __forceinline__ float dot8(const uint4& a, const uint4& b, float acc) {
  const __nv_bfloat162* a2 = reinterpret_cast<const __nv_bfloat162*>(&a);
  const __nv_bfloat162* b2 = reinterpret_cast<const __nv_bfloat162*>(&b);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 fa = __bfloat1622float2(a2[i]);
    const float2 fb = __bfloat1622float2(b2[i]);
    acc = fmaf(fa.x, fb.x, acc);
    acc = fmaf(fa.y, fb.y, acc);
  }
  return acc;
}

// Loads this lane's kUnroll 16-byte chunks, from chunk c0 on, of two rows of W that start at w_row (the
// first row, already offset to this block's K slice) and w_row + K; zeros past nchunks.
__device__ __forceinline__ void load_row_pair(const bf16* __restrict__ w_row, int K, int nchunks, int c0,
                                              uint4 (&a)[kUnroll], uint4 (&b)[kUnroll]) {
  const uint4* w0 = reinterpret_cast<const uint4*>(w_row);
  const uint4* w1 = reinterpret_cast<const uint4*>(w_row + K);
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int c = c0 + 32 * u;
    if (c < nchunks) {
      a[u] = load_streaming(w0 + c);
      b[u] = load_streaming(w1 + c);
    } else {
      a[u] = b[u] = make_uint4(0, 0, 0, 0);
    }
  }
}

// One (row, head) of flash-decoding's chunk merge, by one warp: acc [used, 32 * kDims] and (max, sum) pairs ml
// [used] f32 (max in the log2 domain) -> v, this lane's dims (lane + 32 i) of the merged head, f32.
// Rounds of 64 / kDims chunks: lane j holds chunk j's (max, sum), and every chunk's acc for this lane's dims
// is loaded before any of it is used, so a round is one L2 round trip (with a round trip per chunk, the
// fused merge was 48% slower than the merge kernel: bench/RESULTS.md at 7611f28, twelfth pass).
template <int kDims>
__device__ __forceinline__ void merge_chunks(const float* __restrict__ acc, const float2* __restrict__ ml, int used,
                                             int lane, float (&v)[kDims]) {
  constexpr int kRound = 64 / kDims, kDh = 32 * kDims;
  float run_max = -INFINITY, sum = 0;
#pragma unroll
  for (int i = 0; i < kDims; ++i) v[i] = 0;
  for (int c0 = 0; c0 < used; c0 += kRound) {
    const int n = min(kRound, used - c0);
    const float2 m = lane < n ? ml[c0 + lane] : make_float2(-INFINITY, 0.0f);
    float x[kRound][kDims];
#pragma unroll
    for (int j = 0; j < kRound; ++j) {
#pragma unroll
      for (int i = 0; i < kDims; ++i) x[j][i] = j < n ? acc[static_cast<int64_t>(c0 + j) * kDh + lane + 32 * i] : 0.0f;
    }
    float mx = m.x;
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float new_max = fmaxf(run_max, mx);
    const float corr = exp2f(run_max - new_max);  // 0 on the first round
    const float f = lane < n ? exp2f(m.x - new_max) : 0.0f;
    sum = sum * corr + m.y * f;
#pragma unroll
    for (int i = 0; i < kDims; ++i) v[i] *= corr;
#pragma unroll
    for (int j = 0; j < kRound; ++j) {
      const float fj = __shfl_sync(0xffffffffu, f, j);
#pragma unroll
      for (int i = 0; i < kDims; ++i) v[i] = fmaf(x[j][i], fj, v[i]);
    }
    run_max = new_max;
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
#pragma unroll
  for (int i = 0; i < kDims; ++i) v[i] /= sum;
}

// The RopeQkvWrite epilogue's operands for one warp: the rows' positions and slots, and for the current
// row pair its bias and, per row, the cos/sin of its RoPE pair ((1, 0) on v rows, which are not rotated).
template <int kRows>
struct RopeOperands {
  int pos[kRows], slot[kRows];
  float cos[kRows], sin[kRows];
  float2 bias;

  __device__ __forceinline__ void load_rows(const RopeQkvArgs& r, int rows) {
#pragma unroll
    for (int t = 0; t < kRows; ++t) {
      pos[t] = t < rows ? r.pos[t] : 0;
      slot[t] = t < rows ? r.slot[t] : 0;
    }
  }

  __device__ __forceinline__ void load_pair(const RopeQkvArgs& r, int row) {
    const int half = r.Dh / 2, i = (row % r.Dh) / 2;
    const bool rotated = row < (r.H + r.Hkv) * r.Dh;  // q and k rows
#pragma unroll
    for (int t = 0; t < kRows; ++t) {
      cos[t] = rotated ? r.cos[static_cast<int64_t>(pos[t]) * half + i] : 1.0f;
      sin[t] = rotated ? r.sin[static_cast<int64_t>(pos[t]) * half + i] : 0.0f;
    }
    bias = r.bias ? make_float2(r.bias[row], r.bias[row + 1]) : make_float2(0.0f, 0.0f);
  }
};

// kRows: compile-time row capacity (1, 2, 4, 8); rows <= kRows are real, the rest are zero padding.
// The preload before griddepcontrol.wait: bench/RESULTS.md at 7611f28, sixth pass (smollm2-135m -5.6% per step;
// llama2-7b -2.4% once the out and down projections split to fill the chip, +0.6% before).
// The RoPE epilogue's arguments ride only on its own instantiation, so the other launches' parameter
// blocks stay as small as they were.
template <GemvOutput kOut>
struct EpilogueArgs {};
template <>
struct EpilogueArgs<GemvOutput::RopeQkvWrite> {
  RopeQkvArgs rope;
};
// Likewise the Embedding input's tokens and the residual rows it writes.
template <GemvInput kIn>
struct PrologueArgs {};
template <>
struct PrologueArgs<GemvInput::Embedding> {
  const int32_t* tokens;
  float* residual;
};
template <>
struct PrologueArgs<GemvInput::AttentionPartials> {
  AttentionPartials partials;
};

// Split K (AddF32 from a Bf16 or AttentionPartials input only): blockIdx.y picks the slice [k0, k0 + k_len)
// of K; each slice adds its partial dot products into y with atomics, so only that slice of the input is
// staged.
// kTriggerEarly: let the next kernel launch at this one's start instead of after the wait (launch.cuh). A
// template parameter, not a runtime flag: with a flag the 8-row launches (always after the wait) measured
// 1-1.5% slower per step (llama2-7b, llama3-8b batch 8), so the late kernels stay exactly what they were.
template <int kRows, GemvInput kIn, GemvOutput kOut, bool kTriggerEarly>
__global__ __launch_bounds__(kThreads) void gemv_kernel(
    const bf16* __restrict__ w, const void* __restrict__ in, const float* __restrict__ norm_w, float eps,
    void* __restrict__ out, int N, int K, int rows, int k_len, EpilogueArgs<kOut> epilogue,
    PrologueArgs<kIn> prologue) {
  if constexpr (kTriggerEarly) pdl_launch_dependents();
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int k0 = blockIdx.y * k_len, nchunks = min(k_len, K - k0) / 8;
  const bool split = gridDim.y > 1;
  uint4 a[kUnroll], b[kUnroll];
  // Row pairs are dealt warp-major, so that a last partial round falls on a few warps of every block, spread
  // over all SMs, not on every warp of the first blocks, which leaves some SMs loaded and the rest idle
  // (llama2-7b on the H200: batch 2 4.27 -> 3.99 ms per step, batch 1 3.613 -> 3.597, batch 8 -1.7%).
  const int first_row = (warp * gridDim.x + blockIdx.x) * 2;
  bool preloaded = false;
  if (first_row < N) {
    load_row_pair(w + static_cast<int64_t>(first_row) * K + k0, K, nchunks, lane, a, b);
    preloaded = true;
  }
  // RopeQkvWrite: the rows' positions and slots are inputs of the whole step, and the cos/sin table and
  // bias are constants, so the first row pair's epilogue operands are loaded before the wait too; the
  // epilogue's stores then never wait on a chain of dependent loads (pos, then cos/sin).
  RopeOperands<kRows> rope;
  if constexpr (kOut == GemvOutput::RopeQkvWrite) {
    rope.load_rows(epilogue.rope, rows);
    if (first_row < N) rope.load_pair(epilogue.rope, first_row);
  }
  // Embedding: the tokens, like the positions, are staged before the step.
  int token[kRows];
  if constexpr (kIn == GemvInput::Embedding) {
#pragma unroll
    for (int t = 0; t < kRows; ++t) token[t] = t < rows ? prologue.tokens[t] : 0;
  }
  // AttentionPartials: each row's valid chunk count, from its position.
  int used_chunks[kRows];
  if constexpr (kIn == GemvInput::AttentionPartials) {
    const AttentionPartials& p = prologue.partials;
#pragma unroll
    for (int t = 0; t < kRows; ++t) used_chunks[t] = t < rows ? (p.pos[t] + p.chunk) / p.chunk : 0;
  }
  pdl_wait();
  if constexpr (!kTriggerEarly) pdl_launch_dependents();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* xs = reinterpret_cast<bf16*>(smem_raw);  // [kRows, k_len]
  __shared__ float red[kWarps][kRows];

  // Stage the input rows as bf16 (normalised first for F32RmsNorm and Embedding).
  if constexpr (kIn == GemvInput::F32RmsNorm || kIn == GemvInput::Embedding) {
    // Elements k..k+3 of input row t: the f32 row, or the token's bf16 embedding row.
    auto load4 = [&](int t, int k) {
      if constexpr (kIn == GemvInput::F32RmsNorm) {
        return *reinterpret_cast<const float4*>(static_cast<const float*>(in) + static_cast<int64_t>(t) * K + k);
      } else {
        const bf16* row = static_cast<const bf16*>(in) + static_cast<int64_t>(token[t]) * K;
        const uint2 u = *reinterpret_cast<const uint2*>(row + k);
        const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
        const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
        return make_float4(lo.x, lo.y, hi.x, hi.y);
      }
    };
    float ss[kRows];
#pragma unroll
    for (int t = 0; t < kRows; ++t) {
      ss[t] = 0;
      if (t < rows) {
        for (int k = tid * 4; k < K; k += kThreads * 4) {
          const float4 v = load4(t, k);
          ss[t] += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
      }
      for (int o = 16; o > 0; o >>= 1) ss[t] += __shfl_xor_sync(0xffffffffu, ss[t], o);
      if (lane == 0) red[warp][t] = ss[t];
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < kRows; ++t) {
      float total = 0;
      for (int i = 0; i < kWarps; ++i) total += red[i][t];
      const float inv = rsqrtf(total / K + eps);
      for (int k = tid * 4; k < K; k += kThreads * 4) {
        float4 v = make_float4(0, 0, 0, 0);
        if (t < rows) v = load4(t, k);
        // The residual stream starts as the embeddings; one block writes them (after the wait: outside a
        // graph the previous step's last kernel may still be reading it).
        if constexpr (kIn == GemvInput::Embedding) {
          if (blockIdx.x == 0 && t < rows) {
            *reinterpret_cast<float4*>(prologue.residual + static_cast<int64_t>(t) * K + k) = v;
          }
        }
        float4 g = make_float4(1, 1, 1, 1);
        if (norm_w) g = *reinterpret_cast<const float4*>(norm_w + k);
        __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(xs + static_cast<int64_t>(t) * K + k);
        dst[0] = __floats2bfloat162_rn(v.x * inv * g.x, v.y * inv * g.y);
        dst[1] = __floats2bfloat162_rn(v.z * inv * g.z, v.w * inv * g.w);
      }
    }
  } else if constexpr (kIn == GemvInput::AttentionPartials) {
    // The merge of every (row, head) that this K slice overlaps, one warp each. This takes the place of the
    // merge kernel, a whole kernel boundary of a small layer's chain.
    const AttentionPartials& p = prologue.partials;
    const int h0 = k0 / p.Dh, heads = min(p.H, (k0 + k_len + p.Dh - 1) / p.Dh) - h0;
    for (int job = warp; job < kRows * heads; job += kWarps) {
      const int t = job / heads, h = h0 + job % heads;
      if (t >= rows) break;  // jobs are row-major, and the job index is uniform across the warp
      int used = 0;
#pragma unroll
      for (int r = 0; r < kRows; ++r) used = r == t ? used_chunks[r] : used;
      const int64_t part0 = (static_cast<int64_t>(t) * p.H + h) * p.n_chunks;
      const float2* ml = reinterpret_cast<const float2*>(p.ml) + part0;
      const float* acc = p.acc + part0 * p.Dh;
      auto stage = [&](int i, float v) {
        const int k = h * p.Dh + lane + 32 * i - k0;
        if (k >= 0 && k < k_len) xs[t * k_len + k] = __float2bfloat16(v);
      };
      if (p.Dh == 64) {
        float v[2];
        merge_chunks(acc, ml, used, lane, v);
        stage(0, v[0]);
        stage(1, v[1]);
      } else {
        float v[4];
        merge_chunks(acc, ml, used, lane, v);
#pragma unroll
        for (int i = 0; i < 4; ++i) stage(i, v[i]);
      }
    }
  } else {
    const uint4* x = static_cast<const uint4*>(in);
    uint4* xs4 = reinterpret_cast<uint4*>(xs);
    const int slice = k_len / 8;
#pragma unroll
    for (int t = 0; t < kRows; ++t) {
      const uint4* src = x + static_cast<int64_t>(t) * (K / 8) + k0 / 8;
      for (int c = tid; c < slice; c += kThreads) {
        xs4[t * slice + c] = t < rows && c < nchunks ? src[c] : make_uint4(0, 0, 0, 0);
      }
    }
  }
  __syncthreads();

  const int xs_stride = k_len / 8;
  const uint4* xs4 = reinterpret_cast<const uint4*>(xs);
  const int row_step = gridDim.x * kWarps * 2;
  for (int row = first_row; row < N; row += row_step) {
    // A later row pair's epilogue operands go out before its dot products.
    if constexpr (kOut == GemvOutput::RopeQkvWrite) {
      if (row != first_row) rope.load_pair(epilogue.rope, row);
    }
    float acc0[kRows], acc1[kRows];
#pragma unroll
    for (int t = 0; t < kRows; ++t) acc0[t] = acc1[t] = 0;
    for (int c0 = lane; c0 < nchunks; c0 += 32 * kUnroll) {
      if (!preloaded) load_row_pair(w + static_cast<int64_t>(row) * K + k0, K, nchunks, c0, a, b);
      preloaded = false;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + 32 * u;
        if (c < nchunks) {
#pragma unroll
          for (int t = 0; t < kRows; ++t) {
            const uint4 xv = xs4[t * xs_stride + c];
            acc0[t] = dot8(a[u], xv, acc0[t]);
            acc1[t] = dot8(b[u], xv, acc1[t]);
          }
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kRows; ++t) {
      for (int o = 16; o > 0; o >>= 1) {
        acc0[t] += __shfl_xor_sync(0xffffffffu, acc0[t], o);
        acc1[t] += __shfl_xor_sync(0xffffffffu, acc1[t], o);
      }
    }
    if (lane == 0) {
#pragma unroll
      for (int t = 0; t < kRows; ++t) {
        if (t >= rows) break;
        if constexpr (kOut == GemvOutput::StoreF32) {
          float* y = static_cast<float*>(out) + static_cast<int64_t>(t) * N + row;
          y[0] = acc0[t];
          y[1] = acc1[t];
        } else if constexpr (kOut == GemvOutput::AddF32) {
          float* y = static_cast<float*>(out) + static_cast<int64_t>(t) * N + row;
          if (split) {
            atomicAdd(y, acc0[t]);
            atomicAdd(y + 1, acc1[t]);
          } else {
            y[0] += acc0[t];
            y[1] += acc1[t];
          }
        } else if constexpr (kOut == GemvOutput::StoreBf16) {
          bf16* y = static_cast<bf16*>(out) + static_cast<int64_t>(t) * N + row;
          *reinterpret_cast<__nv_bfloat162*>(y) = __floats2bfloat162_rn(acc0[t], acc1[t]);
        } else if constexpr (kOut == GemvOutput::RopeQkvWrite) {
          const RopeQkvArgs& r = epilogue.rope;
          // (cos, sin) = (1, 0) on v rows
          const float2 v = rotate_pair(acc0[t] + rope.bias.x, acc1[t] + rope.bias.y, rope.cos[t], rope.sin[t]);
          bf16* dst = qkv_destination(r, t, row / r.Dh, row % r.Dh, rope.slot[t], rope.pos[t]);
          *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(v.x, v.y);
        } else {
          bf16* y = static_cast<bf16*>(out) + static_cast<int64_t>(t) * (N / 2) + row / 2;
          *y = __float2bfloat16(acc0[t] / (1.0f + __expf(-acc0[t])) * acc1[t]);
        }
      }
    }
  }
}

int sm_count() {
  static int count = [] {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return 132;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) return 132;
    return n;
  }();
  return count;
}

// Dynamic shared memory of a launch whose K slices are k_len8 long, raising the kernel's limit past 48 KB.
template <class Kernel>
Result<int> staged_bytes(Kernel kernel, int rows, int k_len8) {
  const int smem = rows * k_len8 * 2;
  if (smem > 48 * 1024) {
    DUET_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  }
  return smem;
}

template <int kRows, GemvInput kIn, GemvOutput kOut, bool kTriggerEarly>
Status launch_variant(const GemvArgs& a, cudaStream_t stream) {
  auto kernel = gemv_kernel<kRows, kIn, kOut, kTriggerEarly>;
  auto slice = [&](int splits) { return (a.K + splits - 1) / splits; };
  auto slice8 = [&](int splits) { return (slice(splits) + 7) / 8 * 8; };
  // A residual-add projection over a long K (the down projection of LP's wide layers) is split so that its
  // staged input stays within 48 KB: more blocks per SM and twice the row-pair warps.
  int splits = 1;
  if constexpr ((kIn == GemvInput::Bf16 || kIn == GemvInput::AttentionPartials) && kOut == GemvOutput::AddF32) {
    while (kRows * slice8(splits) * 2 > kSplitStagedBytes) ++splits;
    if (gemv_latency_bound(a.N, a.K)) {
      // A latency-bound map splits until a warp's K slice is at most two 16-byte loads per lane and row:
      // its time is one warp's chain of dependent loads and FMAs, not bytes (smollm2-135m batch 1: 0.546 ->
      // 0.507 ms per step with these splits, 0.510 at four loads per lane, 0.519 at one).
      while (slice(splits) > kMaxLatencyBoundSlice) ++splits;
    } else {
      // A larger one splits while the chip still holds a warp for every (row pair, K slice) and a slice
      // keeps one full round of loads per lane: llama2-7b's out and down projections (2048 row pairs)
      // otherwise leave most warp slots empty (batch 1: 5.33 -> 5.21 ms per step).
      DUET_ASSIGN_OR_RETURN(const int smem, staged_bytes(kernel, kRows, slice8(splits)));
      int per_sm = 0;
      DUET_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
      const int64_t resident_warps = static_cast<int64_t>(std::max(per_sm, 1)) * sm_count() * kWarps;
      while (static_cast<int64_t>(splits + 1) * (a.N / 2) <= resident_warps && slice(splits + 1) >= kMinFillSlice) {
        ++splits;
      }
    }
  }
  const int k_len8 = slice8(splits);
  DUET_ASSIGN_OR_RETURN(const int smem, staged_bytes(kernel, kRows, k_len8));
  int per_sm = 0;
  DUET_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
  const int needed = (a.N + 2 * kWarps - 1) / (2 * kWarps);
  const int grid = std::max(1, std::min(needed, std::max(per_sm, 1) * sm_count() / splits));
  EpilogueArgs<kOut> epilogue;
  if constexpr (kOut == GemvOutput::RopeQkvWrite) epilogue.rope = a.rope;
  PrologueArgs<kIn> prologue;
  if constexpr (kIn == GemvInput::Embedding) prologue = {a.tokens, a.residual};
  if constexpr (kIn == GemvInput::AttentionPartials) prologue = {a.partials};
  DUET_TRY(launch_kernel(kernel, dim3(grid, splits), dim3(kThreads), smem, stream, a.w, a.in, a.norm_w, a.eps, a.out,
                         a.N, a.K, a.T, k_len8, epilogue, prologue));
  return ok_status();
}

// Up to 2 rows, a projection lets the next kernel launch at its own start (launch.cuh), except a small
// layer's QKV: there the attention blocks it would let in early, with their cache prefetch, cost more than
// they hide (smollm2-135m batch 1: 0.454 -> 0.440 ms per step with the out, gate/up and down projections
// early, 0.472 with the QKV too). With 4 rows the early launch made smollm2-135m 7% slower.
template <int kRows, GemvInput kIn, GemvOutput kOut>
Status launch(const GemvArgs& a, cudaStream_t stream) {
  // Only the first layer's QKV projection reads the embeddings.
  if constexpr (kIn == GemvInput::Embedding && (kOut == GemvOutput::AddF32 || kOut == GemvOutput::SiluMulBf16)) {
    return make_error("gemv: the Embedding input is for the QKV projection (StoreF32, StoreBf16, RopeQkvWrite)");
  } else if constexpr (kIn == GemvInput::AttentionPartials && kOut != GemvOutput::AddF32) {
    return make_error("gemv: the AttentionPartials input is for the out projection (AddF32)");
  } else {
    if (kIn == GemvInput::Embedding && (!a.tokens || !a.residual)) {
      return make_error("gemv: the Embedding input needs tokens and a residual");
    }
    if constexpr (kRows <= 2) {
      if (!(kOut == GemvOutput::RopeQkvWrite && gemv_latency_bound(a.N, a.K))) {
        return launch_variant<kRows, kIn, kOut, true>(a, stream);
      }
    }
    return launch_variant<kRows, kIn, kOut, false>(a, stream);
  }
}

template <int kRows, GemvInput kIn>
Status dispatch_out(const GemvArgs& a, cudaStream_t stream) {
  switch (a.out_kind) {
    case GemvOutput::StoreF32: return launch<kRows, kIn, GemvOutput::StoreF32>(a, stream);
    case GemvOutput::AddF32: return launch<kRows, kIn, GemvOutput::AddF32>(a, stream);
    case GemvOutput::StoreBf16: return launch<kRows, kIn, GemvOutput::StoreBf16>(a, stream);
    case GemvOutput::SiluMulBf16: return launch<kRows, kIn, GemvOutput::SiluMulBf16>(a, stream);
    case GemvOutput::RopeQkvWrite:
      if (a.rope.q_norm || a.rope.k_norm) return make_error("gemv: q/k norm cannot be fused (use rope_qkv_write)");
      if (a.N != (a.rope.H + 2 * a.rope.Hkv) * a.rope.Dh) return make_error("gemv: N is not the fused q|k|v width");
      return launch<kRows, kIn, GemvOutput::RopeQkvWrite>(a, stream);
  }
  return make_error("gemv: unknown output kind");
}

template <int kRows>
Status dispatch_in(const GemvArgs& a, cudaStream_t stream) {
  switch (a.in_kind) {
    case GemvInput::F32RmsNorm: return dispatch_out<kRows, GemvInput::F32RmsNorm>(a, stream);
    case GemvInput::Embedding: return dispatch_out<kRows, GemvInput::Embedding>(a, stream);
    case GemvInput::AttentionPartials: {
      const AttentionPartials& p = a.partials;
      if (!p.acc || !p.ml || !p.pos || p.chunk <= 0 || p.n_chunks <= 0 || (p.Dh != 64 && p.Dh != 128) ||
          a.K != p.H * p.Dh) {
        return make_error("gemv: AttentionPartials needs acc, ml, pos, chunk, n_chunks, Dh of 64 or 128 and K = H*Dh");
      }
      return dispatch_out<kRows, GemvInput::AttentionPartials>(a, stream);
    }
    case GemvInput::Bf16: break;
  }
  return dispatch_out<kRows, GemvInput::Bf16>(a, stream);
}

int padded_rows(int T) { return T <= 1 ? 1 : T <= 2 ? 2 : T <= 4 ? 4 : 8; }

}  // namespace

bool gemv_latency_bound(int N, int K) {
  constexpr int64_t kMaxBytes = 8 << 20;  // ~3 us of HBM time, about what a kernel boundary costs
  return static_cast<int64_t>(N) * K * 2 <= kMaxBytes;
}

bool gemv_supported(int T, int K) {
  return T >= 1 && T <= kGemvMaxRows && K % 8 == 0 && padded_rows(T) * K * 2 <= kMaxStagedBytes;
}

Status gemv(const GemvArgs& a, cudaStream_t stream) {
  if (!gemv_supported(a.T, a.K) || a.N % 2 != 0) {
    return make_error("gemv: unsupported shape T=", a.T, " N=", a.N, " K=", a.K,
                      " (expected T <= 8, N even, K % 8 == 0, staged input <= 160 KiB)");
  }
  switch (padded_rows(a.T)) {
    case 1: return dispatch_in<1>(a, stream);
    case 2: return dispatch_in<2>(a, stream);
    case 4: return dispatch_in<4>(a, stream);
    default: return dispatch_in<8>(a, stream);
  }
}

}  // namespace duet::cuda
