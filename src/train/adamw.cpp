#include "train/adamw.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

namespace duet::train {

void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n, int64_t t, float lr,
                  const AdamWConfig& c) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(c.beta1, static_cast<double>(t)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(c.beta2, static_cast<double>(t)));
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = c.beta1 * m[i] + (1.0f - c.beta1) * grads[i];
    v[i] = c.beta2 * v[i] + (1.0f - c.beta2) * grads[i] * grads[i];
    const float m_hat = m[i] / bc1, v_hat = v[i] / bc2;
    params[i] -= lr * (m_hat / (std::sqrt(v_hat) + c.eps) + c.weight_decay * params[i]);
  }
}

double grad_norm(const float* g, int64_t n) {
  // Fixed chunks summed in order, so the norm (and the clipping it drives) is the same bits on every run:
  // an OpenMP reduction combines threads in arrival order, and a resumed run must match an uninterrupted one.
  constexpr int64_t kChunk = 1 << 16;
  std::vector<double> partial((n + kChunk - 1) / kChunk, 0.0);
#pragma omp parallel for if (n > kChunk)
  for (int64_t c = 0; c < static_cast<int64_t>(partial.size()); ++c) {
    double sum = 0;
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) sum += static_cast<double>(g[i]) * g[i];
    partial[c] = sum;
  }
  double sum = 0;
  for (double p : partial) sum += p;
  return std::sqrt(sum);
}

double clip_grad_norm(float* g, int64_t n, double max_norm) {
  const double norm = grad_norm(g, n);
  if (max_norm > 0 && norm > max_norm) {
    const float s = static_cast<float>(max_norm / norm);
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; ++i) g[i] *= s;
  }
  return norm;
}

float lr_at(int64_t s, int64_t steps, int64_t warmup, float lr, float min_ratio) {
  if (s < warmup) return lr * static_cast<float>(s + 1) / static_cast<float>(warmup);
  const int64_t decay = steps - warmup;
  const double progress = decay > 1 ? static_cast<double>(s - warmup) / static_cast<double>(decay - 1) : 1.0;
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return lr * static_cast<float>(min_ratio + (1.0 - min_ratio) * cosine);
}

}  // namespace duet::train
