// The whole model as the trainer runs it: embedding, every layer through
// train::layer_forward (trained layers read the flat parameter buffer, frozen
// ones their own float32 weights), final norm and logits, and the backward
// from d(loss)/d(logits) down to the lowest trained layer. The global and lm
// objectives train through this; the local objective uses the hidden states
// it captures from the original model.
#pragma once

#include <cstdint>
#include <vector>

#include "model/weights.h"
#include "train/layer.h"
#include "train/params.h"

namespace duet::train {

// cos/sin tables for positions [0, positions) and the view the ops read.
struct RopeBuffers {
  RopeBuffers(const ModelConfig& config, int positions);
  cpu::RopeTable table() const;

  int head_dim, positions;
  RopeStyle style;
  std::vector<float> cos, sin;  // [positions, Dh/2]
};

// hidden_states: runs `weights` on tokens [T] and returns, for each b in `boundaries` (0..L), the hidden
// state [T,D] entering layer b (b = L: leaving the last layer, before the final norm).
std::vector<std::vector<float>> hidden_states(const ModelWeights& weights, const RopeBuffers& rope,
                                              const int32_t* tokens, int T, const std::vector<int>& boundaries);

class TrainModel {
 public:
  // `weights` (the LP model) must outlive this; the layers in `layout` read their weights from the flat buffers
  // passed to forward/backward. Sequences up to `max_tokens` long. With `recompute`, the forward keeps only each
  // layer's input from the lowest trained layer up and the backward runs each layer's forward again before its
  // backward: the same gradients, bit for bit, for one layer's activations instead of all of them.
  TrainModel(const ModelWeights& weights, const ParamLayout& layout, int max_tokens, bool recompute = false);

  // logits [T,V] of tokens [T]; saves the activations the backward reads.
  void forward(const float* params, const int32_t* tokens, int T, std::vector<float>& logits);
  // grads += d(loss)/d(params) given dlogits [T,V] of the last forward (frozen weights get no gradient).
  void backward(const float* params, const float* dlogits, float* grads);

 private:
  LayerSpec spec(const float* params, int l) const;

  const ModelWeights& weights_;
  const ParamLayout layout_;  // a copy: small, and no lifetime to track
  RopeBuffers rope_;
  std::vector<bool> trained_;   // [L]
  int first_trained_ = 0;       // layers below it need no saved activations
  int T_ = 0;
  bool recompute_ = false;
  std::vector<LayerActs> acts_;             // [L], filled from first_trained_ up (without recompute_)
  std::vector<std::vector<float>> inputs_;  // [L] of [T, D], from first_trained_ up (with recompute_)
  LayerActs scratch_;
  std::vector<float> x_;         // [T, D] the last layer's output
  std::vector<float> rstd_;      // [T]
  std::vector<float> xn_;        // [T, D] after the final norm
};

}  // namespace duet::train
