// One decoder layer as the trainer runs it, forward with saved activations and
// backward, exactly as CpuModel computes it (h = x + Attn(norm1(x)),
// out = h + MLP(norm2(h))), for layers of any width: an LP wide layer is a
// layer with 2H heads, 2Hkv KV heads and a 2F FFN whose norm gains are folded.
//
// Sequences start at position 0 (training rows are whole sequences, no cache).
#pragma once

#include <cstdint>
#include <vector>

#include "model/weights.h"
#include "train/ops.h"
#include "train/params.h"

namespace duet::train {

// A layer's weights (P = const float*) or their gradients (P = float*); a null
// gradient field is not computed (frozen layer).
template <class P>
struct LayerTensors {
  P attn_q = nullptr;       // [H*Dh, D]
  P attn_k = nullptr;       // [Hkv*Dh, D]
  P attn_v = nullptr;       // [Hkv*Dh, D]
  P attn_q_bias = nullptr;  // [H*Dh] or null
  P attn_k_bias = nullptr;  // [Hkv*Dh] or null
  P attn_v_bias = nullptr;  // [Hkv*Dh] or null
  P attn_q_norm = nullptr;  // [H, Dh] or null (qwen3)
  P attn_k_norm = nullptr;  // [Hkv, Dh] or null
  P attn_out = nullptr;     // [D, H*Dh]
  P ffn_gate = nullptr;     // [F, D]
  P ffn_up = nullptr;       // [F, D]
  P ffn_down = nullptr;     // [D, F]
};
using LayerParams = LayerTensors<const float*>;
using LayerGrads = LayerTensors<float*>;

struct LayerSpec {
  int n_heads = 0;                  // H
  int n_kv_heads = 0;               // Hkv
  int ffn_dim = 0;                  // F
  const float* attn_norm = nullptr;  // [D] frozen gain (all ones in a wide layer)
  const float* ffn_norm = nullptr;   // [D] frozen gain
  LayerParams w;
};

// The layer's own float32 weights (frozen layers).
LayerSpec layer_spec(const LayerWeights& layer);
// The layer's shape and gains from `layer`, its weights from the flat buffer.
LayerSpec layer_spec(const LayerWeights& layer, const ParamLayout& layout, const float* flat, int index);
// Views of the gradient buffer for layer `index` (same layout as the parameters).
LayerGrads layer_grads(const ParamLayout& layout, float* flat, int index);

// Everything the backward reads, for T tokens.
struct LayerActs {
  int T = 0;
  std::vector<float> x;       // [T, D] layer input
  std::vector<float> rstd1;   // [T]
  std::vector<float> xn1;     // [T, D] r(x) * attn_norm
  std::vector<float> q_lin;   // [T, H*Dh] projection output before the q norm (qwen3) else empty
  std::vector<float> k_lin;   // [T, Hkv*Dh]
  std::vector<float> q_rstd;  // [T, H]
  std::vector<float> k_rstd;  // [T, Hkv]
  std::vector<float> q;       // [T, H*Dh] after norm and RoPE
  std::vector<float> k;       // [T, Hkv*Dh] after norm and RoPE
  std::vector<float> v;       // [T, Hkv*Dh]
  std::vector<float> att;     // [H, T, T] attention probabilities
  std::vector<float> attn_y;  // [T, H*Dh] attention output before attn_out
  std::vector<float> h;       // [T, D] x + attention block
  std::vector<float> rstd2;   // [T]
  std::vector<float> xn2;     // [T, D]
  std::vector<float> gate;    // [T, F]
  std::vector<float> up;      // [T, F]
  std::vector<float> act;     // [T, F] silu(gate) * up
};

// The floats a layer's saved activations (LayerActs, train/cuda's too) hold for B sequences of T tokens: what
// the backward keeps per layer unless it recomputes the layer's forward from its input (TrainModel's recompute).
int64_t layer_activation_floats(const ModelConfig& config, const LayerSpec& layer, int B, int T);

// layer_forward: out [T,D] = the layer applied to x [T,D]; fills acts. `table` covers >= T positions.
void layer_forward(const ModelConfig& config, const cpu::RopeTable& table, const LayerSpec& layer, const float* x,
                   int T, LayerActs& acts, float* out);
// layer_backward: dx [T,D] = (written, not accumulated) the gradient wrt x given dout [T,D]; grads += weight gradients
// (null fields skipped). dx may be null when the input's gradient is not needed.
void layer_backward(const ModelConfig& config, const cpu::RopeTable& table, const LayerSpec& layer,
                    const LayerActs& acts, const float* dout, float* dx, const LayerGrads& grads);

}  // namespace duet::train
