// AdamW (decoupled weight decay) on flat fp32 buffers, global-norm gradient
// clipping, and the learning-rate schedule (linear warmup, cosine decay).
#pragma once

#include <cstdint>

namespace duet::train {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

// adamw_update: one step t (1-based) over n parameters: m, v moments updated in place; with bias-corrected
// m^ and v^, param -= lr * (m^ / (sqrt(v^) + eps) + weight_decay * param).
void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n, int64_t t, float lr,
                  const AdamWConfig& config);

// grad_norm: sqrt(sum_i g[i]^2), accumulated in double.
double grad_norm(const float* g, int64_t n);
// clip_grad_norm: scales g by max_norm / norm when norm > max_norm > 0; returns the norm before clipping.
double clip_grad_norm(float* g, int64_t n, double max_norm);

// lr_at: the learning rate of step s in [0, steps): lr * (s+1)/warmup for s < warmup, then a cosine from lr
// down to lr * min_ratio at the last step.
float lr_at(int64_t s, int64_t steps, int64_t warmup, float lr, float min_ratio);

}  // namespace duet::train
