// gemv: the decode-time linear map for T <= 8 rows (ops.cuh has the contract).
//
// At decode, a linear map's cost is streaming W once, so the kernel is built to
// keep HBM busy: each warp owns two adjacent rows of W, every lane issues
// kUnroll 16-byte loads per row (8 loads in flight per lane) that skip L1, and
// the T input rows sit in shared memory as bf16. The grid is sized to the
// number of blocks that fit on the chip and loops over row pairs, so the input
// staging (including the fused RMSNorm) is paid once per resident block.
// Fusions: RMSNorm on the input (F32RmsNorm), residual add (AddF32) and
// SiLU(gate)*up over interleaved gate/up rows (SiluMulBf16).
// Chosen by the model when gemv_supported(T, K); otherwise cuBLAS (gemm.cu).
// Preconditions: N even, K % 8 == 0, 16-byte aligned W, in and out.
#include <algorithm>
#include <cstdlib>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;
constexpr int kMaxStagedBytes = 160 * 1024;

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

// kRows: compile-time row capacity (1, 2, 4, 8); rows <= kRows are real, the rest are zero padding.
template <int kRows, GemvInput kIn, GemvOutput kOut>
__global__ __launch_bounds__(kThreads) void gemv_kernel(const bf16* __restrict__ w, const void* __restrict__ in,
                                                        const float* __restrict__ norm_w, float eps,
                                                        void* __restrict__ out, int N, int K, int rows,
                                                        bool prefetch_w) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  // W does not depend on the previous kernel: optionally start pulling this warp's first rows
  // into L2 before waiting on it (DUET_GEMV_PREFETCH=1; measured in bench/RESULTS.md).
  {
    const int row = (blockIdx.x * kWarps + warp) * 2;
    if (prefetch_w && row < N) {
      const char* w0 = reinterpret_cast<const char*>(w + static_cast<int64_t>(row) * K);
      for (int c = lane; c < min(K / 8, 2 * 32 * kUnroll); c += 32) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(w0 + 16 * c));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(w0 + 2 * static_cast<int64_t>(K) + 16 * c));
      }
    }
  }
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* xs = reinterpret_cast<bf16*>(smem_raw);  // [kRows, K]
  __shared__ float red[kWarps][kRows];

  // Stage the input rows as bf16 (normalised first for F32RmsNorm).
  if constexpr (kIn == GemvInput::F32RmsNorm) {
    const float* x = static_cast<const float*>(in);
    float ss[kRows];
#pragma unroll
    for (int t = 0; t < kRows; ++t) {
      ss[t] = 0;
      if (t < rows) {
        for (int k = tid * 4; k < K; k += kThreads * 4) {
          const float4 v = *reinterpret_cast<const float4*>(x + static_cast<int64_t>(t) * K + k);
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
        if (t < rows) v = *reinterpret_cast<const float4*>(x + static_cast<int64_t>(t) * K + k);
        float4 g = make_float4(1, 1, 1, 1);
        if (norm_w) g = *reinterpret_cast<const float4*>(norm_w + k);
        __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(xs + static_cast<int64_t>(t) * K + k);
        dst[0] = __floats2bfloat162_rn(v.x * inv * g.x, v.y * inv * g.y);
        dst[1] = __floats2bfloat162_rn(v.z * inv * g.z, v.w * inv * g.w);
      }
    }
  } else {
    const uint4* x = static_cast<const uint4*>(in);
    uint4* xs4 = reinterpret_cast<uint4*>(xs);
    const int n_real = rows * K / 8;
    for (int i = tid; i < kRows * K / 8; i += kThreads) xs4[i] = i < n_real ? x[i] : make_uint4(0, 0, 0, 0);
  }
  __syncthreads();

  const int nchunks = K / 8;
  const uint4* xs4 = reinterpret_cast<const uint4*>(xs);
  for (int row = (blockIdx.x * kWarps + warp) * 2; row < N; row += gridDim.x * kWarps * 2) {
    const uint4* w0 = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(row) * K);
    const uint4* w1 = w0 + nchunks;
    float acc0[kRows], acc1[kRows];
#pragma unroll
    for (int t = 0; t < kRows; ++t) acc0[t] = acc1[t] = 0;
    for (int c0 = lane; c0 < nchunks; c0 += 32 * kUnroll) {
      uint4 a[kUnroll], b[kUnroll];
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
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + 32 * u;
        if (c < nchunks) {
#pragma unroll
          for (int t = 0; t < kRows; ++t) {
            const uint4 xv = xs4[t * nchunks + c];
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
          y[0] += acc0[t];
          y[1] += acc1[t];
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

template <int kRows, GemvInput kIn, GemvOutput kOut>
Status launch(const GemvArgs& a, cudaStream_t stream) {
  auto kernel = gemv_kernel<kRows, kIn, kOut>;
  const int smem = kRows * a.K * 2;
  if (smem > 48 * 1024) {
    DUET_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  }
  int per_sm = 0;
  DUET_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
  const int needed = (a.N + 2 * kWarps - 1) / (2 * kWarps);
  const int grid = std::max(1, std::min(needed, std::max(per_sm, 1) * sm_count()));
  static const bool prefetch = [] {
    const char* env = std::getenv("DUET_GEMV_PREFETCH");
    return env && env[0] == '1';
  }();
  DUET_TRY(launch_kernel(kernel, dim3(grid), dim3(kThreads), smem, stream, a.w, a.in, a.norm_w, a.eps, a.out, a.N, a.K,
                         a.T, prefetch));
  return ok_status();
}

template <int kRows, GemvInput kIn>
Status dispatch_out(const GemvArgs& a, cudaStream_t stream) {
  switch (a.out_kind) {
    case GemvOutput::StoreF32: return launch<kRows, kIn, GemvOutput::StoreF32>(a, stream);
    case GemvOutput::AddF32: return launch<kRows, kIn, GemvOutput::AddF32>(a, stream);
    case GemvOutput::SiluMulBf16: return launch<kRows, kIn, GemvOutput::SiluMulBf16>(a, stream);
  }
  return make_error("gemv: unknown output kind");
}

template <int kRows>
Status dispatch_in(const GemvArgs& a, cudaStream_t stream) {
  if (a.in_kind == GemvInput::F32RmsNorm) return dispatch_out<kRows, GemvInput::F32RmsNorm>(a, stream);
  return dispatch_out<kRows, GemvInput::Bf16>(a, stream);
}

int padded_rows(int T) { return T <= 1 ? 1 : T <= 2 ? 2 : T <= 4 ? 4 : 8; }

}  // namespace

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
