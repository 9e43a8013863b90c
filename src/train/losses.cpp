// The healing objectives (train/losses.h). Softmaxes are computed with the
// row maximum subtracted and sums in double: V is ~50k, where a float sum of
// probabilities loses the small terms KL depends on.
#include "train/losses.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace duet::train {
namespace {

// Rows of exps below this many are done before a second thread would wake.
constexpr int64_t kParallelMin = 1 << 16;

// log-sum-exp of one row.
double log_sum_exp(const float* x, int V) {
  const float m = *std::max_element(x, x + V);
  double sum = 0;
  for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(x[v]) - m);
  return m + std::log(sum);
}

double squared_norm(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

// Sums in index order: the same bits for any thread count or arrival order.
double ordered_sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

}  // namespace

float mse_forward(const float* y, const float* target, int64_t n) {
  double err = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(y[i]) - target[i];
    err += d * d;
  }
  return static_cast<float>(err / squared_norm(target, n));
}

void mse_backward(const float* y, const float* target, int64_t n, float scale, float* dy) {
  const float c = static_cast<float>(2.0 * scale / squared_norm(target, n));
  for (int64_t i = 0; i < n; ++i) dy[i] += c * (y[i] - target[i]);
}

float kl_forward(const float* p_logits, const float* q_logits, int T, int V) {
  std::vector<double> per_token(T);
#pragma omp parallel for if (static_cast<int64_t>(T) * V > kParallelMin)
  for (int t = 0; t < T; ++t) {
    const float* p = p_logits + static_cast<int64_t>(t) * V;
    const float* q = q_logits + static_cast<int64_t>(t) * V;
    const double lp = log_sum_exp(p, V), lq = log_sum_exp(q, V);
    double kl = 0;
    for (int v = 0; v < V; ++v) {
      const double log_p = p[v] - lp;
      kl += std::exp(log_p) * (log_p - (q[v] - lq));
    }
    per_token[t] = kl;
  }
  return static_cast<float>(ordered_sum(per_token) / T);
}

void kl_backward(const float* p_logits, const float* q_logits, int T, int V, float scale, float* dq) {
  const double c = static_cast<double>(scale) / T;
#pragma omp parallel for if (static_cast<int64_t>(T) * V > kParallelMin)
  for (int t = 0; t < T; ++t) {
    const float* p = p_logits + static_cast<int64_t>(t) * V;
    const float* q = q_logits + static_cast<int64_t>(t) * V;
    float* d = dq + static_cast<int64_t>(t) * V;
    const double lp = log_sum_exp(p, V), lq = log_sum_exp(q, V);
    for (int v = 0; v < V; ++v) d[v] += static_cast<float>(c * (std::exp(q[v] - lq) - std::exp(p[v] - lp)));
  }
}

float cross_entropy_forward(const float* logits, const int32_t* tokens, int T, int V) {
  std::vector<double> per_token(T - 1);
#pragma omp parallel for if (static_cast<int64_t>(T) * V > kParallelMin)
  for (int t = 0; t < T - 1; ++t) {
    const float* x = logits + static_cast<int64_t>(t) * V;
    per_token[t] = log_sum_exp(x, V) - x[tokens[t + 1]];
  }
  return static_cast<float>(ordered_sum(per_token) / (T - 1));
}

void cross_entropy_backward(const float* logits, const int32_t* tokens, int T, int V, float scale, float* dlogits) {
  const double c = static_cast<double>(scale) / (T - 1);
#pragma omp parallel for if (static_cast<int64_t>(T) * V > kParallelMin)
  for (int t = 0; t < T - 1; ++t) {
    const float* x = logits + static_cast<int64_t>(t) * V;
    float* d = dlogits + static_cast<int64_t>(t) * V;
    const double l = log_sum_exp(x, V);
    for (int v = 0; v < V; ++v) d[v] += static_cast<float>(c * std::exp(x[v] - l));
    d[tokens[t + 1]] -= static_cast<float>(c);
  }
}

}  // namespace duet::train
