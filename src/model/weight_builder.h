// Builds ModelWeights from any checkpoint, given a tensor look-up and the
// format's tensor names. Shapes are checked against the config, so a
// checkpoint whose tensors disagree with its own metadata is an error.
#pragma once

#include <functional>
#include <string>

#include "core/result.h"
#include "io/tensor_info.h"
#include "model/weights.h"

namespace duet {

// A format's name for each tensor. Layer entries receive the layer index.
struct TensorNames {
  std::string token_embd, output_norm, output;
  std::function<std::string(int layer, const std::string& canonical)> layer;
};

// Canonical layer tensor names (GGUF's own): attn_norm, attn_q, attn_k, attn_v,
// attn_q.bias, attn_k.bias, attn_v.bias, attn_q_norm, attn_k_norm, attn_output,
// ffn_norm, ffn_gate, ffn_up, ffn_down.
TensorNames gguf_tensor_names();
TensorNames hf_tensor_names();

using TensorLookup = std::function<const TensorInfo*(const std::string& name)>;

// One layer's widths, for checkpoints whose layers differ (GGUF `deci`, e.g.
// an LP model written by duet export).
struct LayerWidths {
  int n_heads = 0;     // H
  int n_kv_heads = 0;  // Hkv
  int ffn_dim = 0;     // F
};

// `widths`: one entry per layer, or empty when every layer has the config's widths.
Result<ModelWeights> build_weights(const ModelConfig& config, const TensorLookup& lookup,
                                   const TensorNames& names, const std::vector<LayerWidths>& widths = {});

}  // namespace duet
