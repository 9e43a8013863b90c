// GemmRunner: the cuBLASLt GEMMs of prefill and of decode batches over 8 rows.
// run(): y[T,N] = x[T,K] W[N,K]^T + beta * y. x, W bf16; y bf16 or f32 (y_f32); fp32 compute.
// Row-major y = x W^T is column-major y^T[N,T] = op_T(W)[N,K] x^T[K,T]: W is the transposed first
// operand. f32 output with beta = 1 is the fused residual add into the f32 stream.
// Algorithms: the heuristic's first candidate, except for the shapes given to tune(), for which the
// candidates are timed once, at tune() (the model tunes its full prefill chunks at creation: llama2-7b's
// gate/up GEMM 17.7 -> 16.5 ms per 2048-token prompt, bench/RESULTS.md at 7611f28, seventh pass). run() does no
// timing, allocation or synchronisation, so it can be captured in a CUDA graph.
#pragma once

#include <memory>

#include "kernels/cuda/cuda_check.cuh"

namespace duet::cuda {

class GemmRunner {
 public:
  // workspace: device memory of workspace_bytes that the runner's GEMMs may use (owned by the caller).
  static Result<std::unique_ptr<GemmRunner>> create(void* workspace, size_t workspace_bytes);
  ~GemmRunner();

  // Times the heuristic's candidates for this shape on W (read only) with scratch inputs and outputs, and
  // keeps the fastest for run(); without memory for the scratch it keeps the first. Synchronous; not for
  // use inside graph capture.
  Status tune(const bf16* w, bool y_f32, int T, int N, int K, float beta);
  Status run(const bf16* x, const bf16* w, void* y, bool y_f32, int T, int N, int K, float beta,
             cudaStream_t stream);

 private:
  struct Impl;
  explicit GemmRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace duet::cuda
