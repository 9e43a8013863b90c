// Projections y = x W^T (+ bias) and their gradients through OpenBLAS sgemm.
// Threads come from OpenMP only (see kernels/cpu/matmul.cpp for why): each
// thread runs a single-threaded sgemm on its own slice of the output.
#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "train/ops.h"

namespace duet::train {
namespace {

// Slices [0, n) into at most one part per thread, multiples of 16 wide; one part when the whole
// product (`work` multiply-adds) is too small to pay for waking a second thread.
struct Slices {
  int parts, width;
};
Slices slices_of(int n, int64_t work) {
  const int parts = work < (int64_t(1) << 18) ? 1 : std::max(1, std::min(omp_get_max_threads(), n / 16));
  return {parts, ((n + parts - 1) / parts + 15) / 16 * 16};
}

}  // namespace

void matmul_forward(const float* x, const float* w, const float* bias, float* y, int T, int N, int K) {
  cpu::matmul(x, w, bias, y, T, N, K);
}

void matmul_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* dbias, int T, int N,
                     int K) {
  static const bool single_threaded_blas = (openblas_set_num_threads(1), true);
  (void)single_threaded_blas;
  if (dx) {  // dx[T,K] += dy[T,N] W[N,K], threads split K
    const Slices s = slices_of(K, static_cast<int64_t>(T) * N * K);
#pragma omp parallel for num_threads(s.parts)
    for (int part = 0; part < s.parts; ++part) {
      const int k0 = part * s.width, k1 = std::min(K, k0 + s.width);
      if (k0 >= k1) continue;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, k1 - k0, N, 1.0f, dy, N, w + k0, K, 1.0f, dx + k0, K);
    }
  }
  if (dw) {  // dw[N,K] += dy^T[N,T] x[T,K], threads split N
    const Slices s = slices_of(N, static_cast<int64_t>(T) * N * K);
#pragma omp parallel for num_threads(s.parts)
    for (int part = 0; part < s.parts; ++part) {
      const int n0 = part * s.width, n1 = std::min(N, n0 + s.width);
      if (n0 >= n1) continue;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n1 - n0, K, T, 1.0f, dy + n0, N, x, K, 1.0f,
                  dw + static_cast<int64_t>(n0) * K, K);
    }
  }
  if (dbias) {
    for (int t = 0; t < T; ++t) {
      const float* row = dy + static_cast<int64_t>(t) * N;
      for (int n = 0; n < N; ++n) dbias[n] += row[n];
    }
  }
}

}  // namespace duet::train
