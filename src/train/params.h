// Trained parameters in flat buffers with named views (llm.c style): the
// weights, gradients and AdamW moments of the trained layers each live in one
// float array with the same layout, so clipping and the optimizer are loops
// over one array and a checkpoint is three arrays plus the layout.
//
// Tensor names follow GGUF: "blk.<l>.attn_q" for layer l of the LP model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.h"

namespace duet::train {

struct ParamTensor {
  std::string name;            // "blk.7.ffn_up"
  int layer = 0;               // index in the LP model
  int64_t offset = 0;          // into the flat buffer, in floats
  std::vector<int64_t> shape;  // row-major: [rows, cols] or [n]
  int64_t numel() const;
};

struct ParamLayout {
  std::vector<ParamTensor> tensors;
  int64_t total = 0;  // floats

  const ParamTensor* find(const std::string& name) const;
  std::vector<int> layers() const;  // the trained layers, ascending
};

// The layout of every trainable tensor of `layers` (all their weights; the
// norm gains are folded into them for wide layers and are not trained).
ParamLayout param_layout(const ModelWeights& weights, const std::vector<int>& layers);

// The LP model's wide layers (those computing two source layers).
std::vector<int> wide_layers(const ModelWeights& weights);

// flat[layout] <- the layers' float32 weights.
void gather_params(const ModelWeights& weights, const ParamLayout& layout, float* flat);
// The layers' float32 weights <- flat[layout]; drops their encoded rows and
// packed gains, which no longer match, so every backend reads the trained values.
void scatter_params(const float* flat, const ParamLayout& layout, ModelWeights& weights);

}  // namespace duet::train
