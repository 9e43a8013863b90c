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

// A model's float32 weights on the device, and the rope table for `positions` positions.
class DeviceWeights {
 public:
  Status upload(const ModelWeights& weights, int positions);
  // Layer l with its own (frozen) weights.
  LayerSpec layer(int l) const;
  // Layer l's shape and gains, its trainable weights from the device flat buffer `params` in `layout`.
  LayerSpec layer(int l, const ParamLayout& layout, const float* params) const;
  const float* token_embd() const { return token_embd_; }  // [V, D]
  const float* output() const { return output_; }           // [V, D]
  const float* output_norm() const { return output_norm_; } // [D]
  RopeTable rope() const { return rope_; }
  const ModelWeights& host() const { return *host_; }

 private:
  const float* put(const float* data, int64_t n);  // appended to the arena during upload
  const ModelWeights* host_ = nullptr;
  DeviceArray<float> arena_;
  int64_t used_ = 0;
  cudaError_t copy_error_ = cudaSuccess;  // the first failed copy of an upload
  const float *token_embd_ = nullptr, *output_ = nullptr, *output_norm_ = nullptr;
  std::vector<LayerSpec> layers_;
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

  // logits [B*T, V] (device, owned here) of tokens [B*T] (device); saves the activations.
  Status forward(const TrainContext& ctx, const float* params, const int32_t* tokens, int B, int T);
  float* logits() const { return logits_.get(); }
  float* dlogits() const { return dlogits_.get(); }  // [B*T, V], zeroed by forward
  // grads += d(loss)/d(params) given dlogits() of the last forward.
  Status backward(const TrainContext& ctx, const float* params, float* grads);

 private:
  LayerSpec spec(const float* params, int l) const;

  const DeviceWeights& weights_;
  const ParamLayout layout_;
  std::vector<bool> trained_;  // [L]
  int first_trained_ = 0;
  int B_ = 0, T_ = 0;
  std::vector<LayerActs> acts_;  // [L], filled from first_trained_ up
  LayerActs scratch_acts_;
  LayerScratch scratch_;
  DeviceArray<float> x_, y_, rstd_, xn_, dx_, dprev_, dxn_;  // [R, D] (rstd_ [R])
  DeviceArray<float> logits_, dlogits_;                       // [R, V]
};

}  // namespace duet::train::cuda
