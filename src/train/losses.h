// The healing objectives as forward/backward pairs. Each forward returns the
// loss; each backward ACCUMULATES scale * d(loss)/d(input) into its gradient
// (scale = 1/micro-batches under gradient accumulation).
//   local: MSE of a wide layer's output against the original pair's output,
//          normalised by the target's squared norm (scale-free across layers).
//   global: KL(P_orig || P_lp) of the next-token distributions, mean over tokens.
//   lm: next-token cross-entropy, mean over the T-1 predicted tokens.
#pragma once

#include <cstdint>

namespace duet::train {

// mse_forward: sum_i (y[i] - target[i])^2 / sum_i target[i]^2. y, target [n].
float mse_forward(const float* y, const float* target, int64_t n);
// mse_backward: dy[i] += scale * 2 (y[i] - target[i]) / sum_j target[j]^2.
void mse_backward(const float* y, const float* target, int64_t n, float scale, float* dy);

// kl_forward: (1/T) sum_t sum_v P[t,v] (log P[t,v] - log Q[t,v]), P = softmax(p_logits), Q = softmax(q_logits). [T,V] each.
float kl_forward(const float* p_logits, const float* q_logits, int T, int V);
// kl_backward: dq[t,v] += scale * (Q[t,v] - P[t,v]) / T (the gradient wrt q_logits; P is a constant target).
void kl_backward(const float* p_logits, const float* q_logits, int T, int V, float scale, float* dq);

// cross_entropy_forward: -(1/(T-1)) sum_{t<T-1} log softmax(logits[t,:])[tokens[t+1]]. logits [T,V]; tokens [T]; T >= 2.
float cross_entropy_forward(const float* logits, const int32_t* tokens, int T, int V);
// cross_entropy_backward: dlogits[t,v] += scale * (softmax(logits[t,:])[v] - [v == tokens[t+1]]) / (T-1) for t < T-1.
void cross_entropy_backward(const float* logits, const int32_t* tokens, int T, int V, float scale, float* dlogits);

}  // namespace duet::train
