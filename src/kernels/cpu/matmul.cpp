// matmul through OpenBLAS: y = x W^T, the layout every checkpoint stores
// (a Linear's weight is [out_features, in_features]).
//
// Threads come from OpenMP, not from OpenBLAS: each thread runs a
// single-threaded sgemm on its own slice of W's rows. Mixing OpenBLAS's
// pthread pool with OpenMP regions made the two pools spin against each other
// on 2 cores (decode was 10x slower); one pool avoids that, and at T=1 each
// thread streams its own share of W, which is what a memory-bound GEMV needs.
#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "kernels/ops.h"

namespace duet::cpu {

void matmul(const float* x, const float* w, const float* bias, float* y, int T, int N, int K) {
  static const bool single_threaded_blas = (openblas_set_num_threads(1), true);
  (void)single_threaded_blas;
  const int threads = std::max(1, std::min(omp_get_max_threads(), N / 16));
  // Slices are multiples of 16 rows so every thread's sgemm keeps full-width vector tiles.
  const int slice = ((N + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads)
  for (int part = 0; part < threads; ++part) {
    const int n0 = part * slice, n1 = std::min(N, n0 + slice);
    if (n0 >= n1) continue;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n1 - n0, K, 1.0f, x, K, w + static_cast<int64_t>(n0) * K,
                K, 0.0f, y + n0, N);
    if (bias) {
      for (int t = 0; t < T; ++t) {
        float* row = y + static_cast<int64_t>(t) * N;
        for (int n = n0; n < n1; ++n) row[n] += bias[n];
      }
    }
  }
}

}  // namespace duet::cpu
