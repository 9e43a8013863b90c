// One decoder layer on the GPU, forward with saved activations and backward,
// calling train/cuda/ops.cuh in the same order as train/layer.cpp calls
// train/ops.h, for B sequences of T tokens at once. The layer's LayerSpec and
// LayerGrads (train/layer.h) hold device pointers here.
#pragma once

#include "train/cuda/device_array.cuh"
#include "train/cuda/ops.cuh"
#include "train/layer.h"

namespace duet::train::cuda {

// Everything the backward reads, for R = B*T rows (device buffers; fields as train::LayerActs).
struct LayerActs {
  int B = 0, T = 0;
  DeviceArray<float> x;       // [R, D] layer input
  DeviceArray<float> rstd1;   // [R]
  DeviceArray<float> xn1;     // [R, D]
  DeviceArray<float> q_lin;   // [R, H*Dh] before the q norm (qwen3 only)
  DeviceArray<float> k_lin;   // [R, Hkv*Dh]
  DeviceArray<float> q_rstd;  // [R, H]
  DeviceArray<float> k_rstd;  // [R, Hkv]
  DeviceArray<float> q;       // [R, H*Dh] after norm and RoPE
  DeviceArray<float> k;       // [R, Hkv*Dh]
  DeviceArray<float> v;       // [R, Hkv*Dh]
  DeviceArray<float> att;     // [B, H, T, T]
  DeviceArray<float> attn_y;  // [R, H*Dh]
  DeviceArray<float> h;       // [R, D]
  DeviceArray<float> rstd2;   // [R]
  DeviceArray<float> xn2;     // [R, D]
  DeviceArray<float> gate;    // [R, F]
  DeviceArray<float> up;      // [R, F]
  DeviceArray<float> act;     // [R, F]
};

// The backward's temporaries, shared by all layers (grown to the widest).
struct LayerScratch {
  DeviceArray<float> dh, dxn;           // [R, D]
  DeviceArray<float> dact, dgate, dup;  // [R, F]
  DeviceArray<float> dy, dq, dq_lin;    // [R, H*Dh]
  DeviceArray<float> dk, dv, dk_lin;    // [R, Hkv*Dh]
  DeviceArray<float> datt;              // [B, H, T, T]
};

// layer_forward: out [R,D] = the layer applied to x [R,D] (R = B*T, positions restart per sequence); fills acts.
Status layer_forward(const TrainContext& ctx, const ModelConfig& config, const RopeTable& rope, const LayerSpec& layer,
                     const float* x, int B, int T, LayerActs& acts, float* out);
// layer_backward: dx [R,D] = (written) the gradient wrt x given dout [R,D]; grads += weight gradients (null
// fields skipped); dx may be null.
Status layer_backward(const TrainContext& ctx, const ModelConfig& config, const RopeTable& rope,
                      const LayerSpec& layer, const LayerActs& acts, const float* dout, float* dx,
                      const LayerGrads& grads, LayerScratch& scratch);

}  // namespace duet::train::cuda
