// RMSNorm over rows (model norms) and over heads (qwen3 q/k norms).
#include <cmath>

#include "kernels/ops.h"

namespace duet::cpu {
namespace {

inline void rms_norm_row(const float* x, const float* w, float* y, int n, float eps) {
  // Accumulate in double: rows of a few thousand floats lose bits in a float sum.
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum / n + eps));
  if (w) {
    for (int i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
  } else {
    for (int i = 0; i < n; ++i) y[i] = x[i] * scale;
  }
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int T, int D, float eps) {
  // A row's double sum is a serial chain (~1 us at D = 576): a few rows pay for a second thread.
#pragma omp parallel for if (T >= 4)
  for (int t = 0; t < T; ++t) rms_norm_row(x + static_cast<int64_t>(t) * D, w, y + static_cast<int64_t>(t) * D, D, eps);
}

void rms_norm_heads(float* x, const float* w, int T, int H, int Dh, float eps) {
#pragma omp parallel for collapse(2) if (T > 16)
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      float* row = x + (static_cast<int64_t>(t) * H + h) * Dh;
      rms_norm_row(row, w + static_cast<int64_t>(h) * Dh, row, Dh, eps);
    }
  }
}

}  // namespace duet::cpu
