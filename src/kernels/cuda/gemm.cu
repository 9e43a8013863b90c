// GemmRunner (gemm.cuh): cuBLASLt matmuls with per-shape descriptors and algorithms, cached.
#include "kernels/cuda/gemm.cuh"

#include <cublasLt.h>

#include <map>
#include <tuple>
#include <vector>

#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

constexpr int kCandidates = 8;  // heuristic candidates timed by tune()
constexpr int kTimedRuns = 3;

}  // namespace

struct GemmRunner::Impl {
  // One GEMM shape: its descriptors and the algorithm run() uses.
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t w = nullptr, x = nullptr, y = nullptr;
    std::vector<cublasLtMatmulHeuristicResult_t> candidates;
    int chosen = 0;
    bool tuned = false;
  };
  using Key = std::tuple<int, int, int, bool, bool>;  // T, N, K, y_f32, beta != 0

  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& [key, p] : plans) destroy(p);
    if (handle) cublasLtDestroy(handle);
  }

  static void destroy(Plan& p) {
    if (p.w) cublasLtMatrixLayoutDestroy(p.w);
    if (p.x) cublasLtMatrixLayoutDestroy(p.x);
    if (p.y) cublasLtMatrixLayoutDestroy(p.y);
    if (p.op) cublasLtMatmulDescDestroy(p.op);
  }

  // The descriptors of one shape and the heuristic's candidates for it (best first).
  Status build(Plan& p, bool y_f32, int T, int N, int K) {
    DUET_CUDA_TRY(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
    DUET_CUDA_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
    DUET_CUDA_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
    DUET_CUDA_TRY(cublasLtMatrixLayoutCreate(&p.w, CUDA_R_16BF, K, N, K));
    DUET_CUDA_TRY(cublasLtMatrixLayoutCreate(&p.x, CUDA_R_16BF, K, T, K));
    DUET_CUDA_TRY(cublasLtMatrixLayoutCreate(&p.y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, N, T, N));
    cublasLtMatmulPreference_t pref = nullptr;
    DUET_CUDA_TRY(cublasLtMatmulPreferenceCreate(&pref));
    const cublasStatus_t set = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                    &workspace_bytes, sizeof(workspace_bytes));
    p.candidates.resize(kCandidates);
    int found = 0;
    const cublasStatus_t heuristic =
        set != CUBLAS_STATUS_SUCCESS ? set
                                     : cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.w, p.x, p.y, p.y, pref, kCandidates,
                                                                      p.candidates.data(), &found);
    cublasLtMatmulPreferenceDestroy(pref);
    DUET_CUDA_TRY(heuristic);
    if (found == 0) return make_error("gemm: cuBLASLt has no algorithm for T=", T, " N=", N, " K=", K);
    p.candidates.resize(found);
    return ok_status();
  }

  Result<Plan*> plan(bool y_f32, int T, int N, int K, float beta) {
    const Key key{T, N, K, y_f32, beta != 0.0f};
    auto it = plans.find(key);
    if (it != plans.end()) return &it->second;
    Plan p;
    const Status built = build(p, y_f32, T, N, K);
    if (!built.ok()) {
      destroy(p);
      return built.error();
    }
    return &plans.emplace(key, std::move(p)).first->second;
  }

  cublasStatus_t matmul(const Plan& p, int algo, const bf16* x, const bf16* w, void* y, float beta,
                        cudaStream_t stream) const {
    const float alpha = 1.0f;
    return cublasLtMatmul(handle, p.op, &alpha, w, p.w, x, p.x, &beta, y, p.y, y, p.y, &p.candidates[algo].algo,
                          workspace, workspace_bytes, stream);
  }
};

GemmRunner::GemmRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GemmRunner::~GemmRunner() = default;

Result<std::unique_ptr<GemmRunner>> GemmRunner::create(void* workspace, size_t workspace_bytes) {
  auto impl = std::make_unique<Impl>();
  DUET_CUDA_TRY(cublasLtCreate(&impl->handle));
  impl->workspace = workspace;
  impl->workspace_bytes = workspace_bytes;
  return std::unique_ptr<GemmRunner>(new GemmRunner(std::move(impl)));
}

Status GemmRunner::run(const bf16* x, const bf16* w, void* y, bool y_f32, int T, int N, int K, float beta,
                       cudaStream_t stream) {
  DUET_ASSIGN_OR_RETURN(Impl::Plan* p, impl_->plan(y_f32, T, N, K, beta));
  DUET_CUDA_TRY(impl_->matmul(*p, p->chosen, x, w, y, beta, stream));
  return ok_status();
}

Status GemmRunner::tune(const bf16* w, bool y_f32, int T, int N, int K, float beta) {
  DUET_ASSIGN_OR_RETURN(Impl::Plan* p, impl_->plan(y_f32, T, N, K, beta));
  if (p->tuned || p->candidates.size() < 2) return ok_status();
  p->tuned = true;
  // Scratch input and output, so the model's buffers stay intact. The input holds random values, not zeros:
  // tensor cores draw less power on zeros, and the clocks (so the ranking) would not be a prompt's.
  void *x = nullptr, *y = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  auto release = [&] {
    if (x) cudaFree(x);
    if (y) cudaFree(y);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
  };
  auto timed = [&]() -> Status {
    if (cudaMalloc(&x, static_cast<size_t>(T) * K * 2) != cudaSuccess ||
        cudaMalloc(&y, static_cast<size_t>(T) * N * (y_f32 ? 4 : 2)) != cudaSuccess) {
      cudaGetLastError();  // no memory to spare for the scratch: the heuristic's first candidate stays
      return ok_status();
    }
    DUET_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    DUET_TRY(fill_uniform(static_cast<bf16*>(x), static_cast<int64_t>(T) * K, 0x9e3779b9u, 1.0f, 0.0f, stream));
    DUET_CUDA_TRY(cudaEventCreate(&start));
    DUET_CUDA_TRY(cudaEventCreate(&stop));
    float best_ms = 0;
    bool timed_one = false;
    for (int c = 0; c < static_cast<int>(p->candidates.size()); ++c) {
      // A candidate that cannot run this problem (or fails) is skipped.
      if (impl_->matmul(*p, c, static_cast<bf16*>(x), w, y, beta, stream) != CUBLAS_STATUS_SUCCESS) continue;
      DUET_CUDA_TRY(cudaEventRecord(start, stream));
      for (int r = 0; r < kTimedRuns; ++r) DUET_CUDA_TRY(impl_->matmul(*p, c, static_cast<bf16*>(x), w, y, beta, stream));
      DUET_CUDA_TRY(cudaEventRecord(stop, stream));
      DUET_CUDA_TRY(cudaEventSynchronize(stop));
      float ms = 0;
      DUET_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
      if (!timed_one || ms < best_ms) {
        best_ms = ms;
        p->chosen = c;
        timed_one = true;
      }
    }
    return ok_status();
  };
  const Status st = timed();
  release();
  return st;
}

}  // namespace duet::cuda
