// RMSNorm forward/backward over rows (the layer norms, gains frozen or folded)
// and over heads (qwen3 q/k norms, gains trained).
//
// With r = rsqrt(mean(x^2) + eps) and g = dy * gain:
//   dx_j = r g_j - r^3 x_j (g . x) / n
#include <cmath>

#include "train/ops.h"

namespace duet::train {
namespace {

// Accumulates in double like the inference kernel (kernels/cpu/rms_norm.cpp), so forward values match it.
float rstd_of(const float* x, int n, float eps) {
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return static_cast<float>(1.0 / std::sqrt(sum / n + eps));
}

void norm_row_backward(const float* dy, const float* x, const float* g, float r, float* dx, int n) {
  double gx = 0;
  for (int i = 0; i < n; ++i) gx += static_cast<double>(dy[i]) * (g ? g[i] : 1.0f) * x[i];
  const float c = static_cast<float>(gx / n) * r * r * r;
  for (int i = 0; i < n; ++i) dx[i] += r * dy[i] * (g ? g[i] : 1.0f) - c * x[i];
}

}  // namespace

void rms_norm_forward(const float* x, const float* g, float* y, float* rstd, int T, int D, float eps) {
#pragma omp parallel for if (T > 16)
  for (int t = 0; t < T; ++t) {
    const float* xr = x + static_cast<int64_t>(t) * D;
    float* yr = y + static_cast<int64_t>(t) * D;
    const float r = rstd_of(xr, D, eps);
    rstd[t] = r;
    for (int i = 0; i < D; ++i) yr[i] = g ? xr[i] * r * g[i] : xr[i] * r;
  }
}

void rms_norm_backward(const float* dy, const float* x, const float* g, const float* rstd, float* dx, int T, int D) {
#pragma omp parallel for if (T > 16)
  for (int t = 0; t < T; ++t) {
    const int64_t o = static_cast<int64_t>(t) * D;
    norm_row_backward(dy + o, x + o, g, rstd[t], dx + o, D);
  }
}

void rms_norm_heads_forward(const float* x, const float* w, float* y, float* rstd, int T, int H, int Dh, float eps) {
  for (int64_t row = 0; row < static_cast<int64_t>(T) * H; ++row) {
    const float* xr = x + row * Dh;
    const float* wr = w + (row % H) * Dh;
    float* yr = y + row * Dh;
    const float r = rstd_of(xr, Dh, eps);
    rstd[row] = r;
    for (int i = 0; i < Dh; ++i) yr[i] = xr[i] * r * wr[i];
  }
}

void rms_norm_heads_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                             int T, int H, int Dh) {
  for (int64_t row = 0; row < static_cast<int64_t>(T) * H; ++row) {
    const int64_t o = row * Dh;
    const int64_t h = row % H;
    norm_row_backward(dy + o, x + o, w + h * Dh, rstd[row], dx + o, Dh);
    if (dw) {
      for (int i = 0; i < Dh; ++i) dw[h * Dh + i] += dy[o + i] * x[o + i] * rstd[row];
    }
  }
}

}  // namespace duet::train
