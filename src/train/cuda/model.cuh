// The whole model on the GPU as the trainer runs it (train/model.h, call for
// call): the float32 weights uploaded once (DeviceWeights), the hidden states
// of the original model at layer boundaries (the local stage's inputs and
// targets, from this same training forward), and TrainModel: embedding, every
// layer, final norm, logits, and the backward down to the lowest trained layer.
#pragma once

#include <cstdint>
#include <vector>

#include "model/weights.h"
#include "train/cuda/layer.cuh"
#include "train/params.h"

namespace duet::train::cuda {

// What DeviceWeights holds of a model: the healer uploads only what a stage reads (a 7B model's two float32
// copies and the optimizer state of its wide layers do not fit one 80 GB GPU together).
enum class LayerPart : uint8_t {
  None,   // not on the device
  Gains,  // the norm gains only: the trained layers, whose tensors come from the flat parameters
  All,    // every tensor (frozen layers)
};
struct WeightParts {
  std::vector<LayerPart> layers;  // [L]
  bool head = false;              // the final norm and the output matrix (the embedding is always uploaded)
  bool operator==(const WeightParts& o) const { return layers == o.layers && head == o.head; }
  bool operator!=(const WeightParts& o) const { return !(*this == o); }
};
// The whole model: every layer, the head; the layers of `trained` (if any) as Gains.
WeightParts whole_model(const ModelWeights& weights, const ParamLayout* trained = nullptr);
// Layers [0, n) whole, nothing of the rest, no head: what hidden_states up to boundary n reads.
WeightParts layers_below(const ModelWeights& weights, int n);
// The gains of the layers of `trained`, nothing else but the embedding.
WeightParts trained_gains(const ModelWeights& weights, const ParamLayout& trained);

// A model's float32 weights on the device (its WeightParts), and the rope table for `positions` positions.
class DeviceWeights {
 public:
  Status upload(const ModelWeights& weights, int positions) { return upload(weights, positions, whole_model(weights)); }
  // Replaces what was uploaded before (its memory is given back first).
  Status upload(const ModelWeights& weights, int positions, const WeightParts& parts);
  void release();
  const WeightParts& parts() const { return parts_; }
  // Layer l with its own (frozen) weights; l must be uploaded All.
  LayerSpec layer(int l) const;
  // Layer l's shape and gains (uploaded All or Gains), its trainable weights from the device flat buffer `params`
  // in `layout`.
  LayerSpec layer(int l, const ParamLayout& layout, const float* params) const;
  const float* token_embd() const { return token_embd_; }  // [V, D]
  const float* output() const;                              // [V, D]; parts().head only
  const float* output_norm() const;                         // [D]; parts().head only
  RopeTable rope() const { return rope_; }
  const ModelWeights& host() const { return *host_; }

 private:
  const float* put(const float* data, int64_t n);  // appended to the arena during upload
  const ModelWeights* host_ = nullptr;
  WeightParts parts_;
  DeviceArray<float> arena_;
  int64_t used_ = 0;
  cudaError_t copy_error_ = cudaSuccess;  // the first failed copy of an upload
  const float *token_embd_ = nullptr, *output_ = nullptr, *output_norm_ = nullptr;
  std::vector<LayerSpec> layers_;  // [L]; null pointers where parts_ leaves them out
  RopeTable rope_;
};

// The buffers of a forward that saves nothing (kept across calls: no allocation per step).
struct ForwardWorkspace {
  DeviceArray<float> x, y;  // [R, D]
  LayerActs acts;
};

// hidden_states: for tokens [B*T] (device), out[i] [B*T, D] <- the hidden state entering layer boundaries[i]
// (boundaries in 0..L). out buffers are grown as needed.
Status hidden_states(const TrainContext& ctx, const DeviceWeights& weights, const int32_t* tokens, int B, int T,
                     const std::vector<int>& boundaries, std::vector<DeviceArray<float>>& out, ForwardWorkspace& ws);

class TrainModel {
 public:
  // `weights` (the LP model, uploaded) must outlive this; layers in `layout` read the flat device buffers.
  TrainModel(const DeviceWeights& weights, const ParamLayout& layout);

  // With recompute on, forward keeps only each layer's input from the lowest trained layer up and backward runs
  // each layer's forward again into one shared LayerActs before its backward (train::TrainModel's recompute: the
  // same gradients, bit for bit). Turning it on gives the kept activations' memory back.
  void set_recompute(bool on);
  bool recompute() const { return recompute_; }
  // Device bytes the forward of B sequences of T tokens keeps for the backward without recompute, and with it.
  int64_t saved_bytes(const float* params, int B, int T) const;
  int64_t recompute_bytes(const float* params, int B, int T) const;
  // Device bytes held now by kept activations and layer inputs (given back or reused by set_recompute).
  int64_t held_bytes() const;

  // logits [B*T, V] (device, owned here) of tokens [B*T] (device); keeps what backward reads unless
  // `for_backward` is false (a forward for the logits alone keeps nothing).
  Status forward(const TrainContext& ctx, const float* params, const int32_t* tokens, int B, int T,
                 bool for_backward = true);
  float* logits() const { return logits_.get(); }
  float* dlogits() const { return dlogits_.get(); }  // [B*T, V], zeroed by forward
  // grads += d(loss)/d(params) given dlogits() of the last forward (which was for_backward).
  Status backward(const TrainContext& ctx, const float* params, float* grads);

 private:
  LayerSpec spec(const float* params, int l) const;

  const DeviceWeights& weights_;
  const ParamLayout layout_;
  std::vector<bool> trained_;  // [L]
  int first_trained_ = 0;
  int B_ = 0, T_ = 0;
  bool recompute_ = false;
  bool backward_ready_ = false;              // the last forward kept what backward reads
  std::vector<LayerActs> acts_;              // [L], filled from first_trained_ up (without recompute_)
  std::vector<DeviceArray<float>> inputs_;   // [L] of [R, D], from first_trained_ up (with recompute_)
  LayerActs scratch_acts_;
  LayerScratch scratch_;
  DeviceArray<float> x_, y_, rstd_, xn_, dx_, dprev_, dxn_;  // [R, D] (rstd_ [R])
  DeviceArray<float> logits_, dlogits_;                       // [R, V]
};

// Floats held by a LayerActs' buffers.
int64_t held_floats(const LayerActs& acts);

}  // namespace duet::train::cuda
