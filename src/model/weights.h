// ModelWeights: every parameter of a Llama-family decoder in float32, row-major.
//
// A layer carries its own head counts and FFN width because an LP wide layer
// (model/lp_merge.h) has 2H query heads, 2Hkv KV heads and 2F FFN columns.
// Shapes use: D model dim, H/Hkv this layer's heads, Dh head dim, F this
// layer's FFN width, V vocab.
#pragma once

#include <cstdint>
#include <vector>

#include "io/dtype.h"
#include "model/config.h"

namespace duet {

// A matrix's rows in the checkpoint's own block encoding (Q4_0, Q4_1, Q8_0),
// kept beside the float32 copy so that the CPU decode path streams 4-8x fewer
// bytes (decode is memory-bound). Decoding a block gives exactly the float32
// copy's values. Empty for other encodings.
struct PackedRows {
  DType type = DType::F32;
  int64_t row_bytes = 0;
  std::vector<uint8_t> bytes;  // [rows, row_bytes]

  bool empty() const { return bytes.empty(); }
};

struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;  // [rows, cols]
  PackedRows packed;        // same rows in block encoding, or empty

  bool empty() const { return data.empty(); }
  float* row(int64_t r) { return data.data() + r * cols; }
  const float* row(int64_t r) const { return data.data() + r * cols; }
};

struct LayerWeights {
  int n_heads = 0;     // H   (2H for a wide layer)
  int n_kv_heads = 0;  // Hkv (2Hkv for a wide layer)
  int ffn_dim = 0;     // F   (2F for a wide layer)
  std::vector<int> source_layers;  // original layer indices this layer computes (1 or 2)

  std::vector<float> attn_norm;    // [D]; all ones once gains are folded
  Matrix attn_q;                   // [H*Dh, D]
  Matrix attn_k;                   // [Hkv*Dh, D]
  Matrix attn_v;                   // [Hkv*Dh, D]
  std::vector<float> attn_q_bias;  // [H*Dh] or empty
  std::vector<float> attn_k_bias;  // [Hkv*Dh] or empty
  std::vector<float> attn_v_bias;  // [Hkv*Dh] or empty
  Matrix attn_q_norm;              // [H, Dh] per-head gains or empty (qwen3)
  Matrix attn_k_norm;              // [Hkv, Dh] or empty
  Matrix attn_out;                 // [D, H*Dh]
  std::vector<float> ffn_norm;     // [D]
  Matrix ffn_gate;                 // [F, D]
  Matrix ffn_up;                   // [F, D]
  Matrix ffn_down;                 // [D, F]

  // Norm gains for the packed rows, which cannot have gains folded in: row
  // group k of attn_q/k/v (resp. ffn_gate/up) reads r(x) * gains[k]. One
  // group for an ordinary layer (its norm gain), two for a wide layer.
  Matrix attn_packed_gains;        // [G, D]
  Matrix ffn_packed_gains;         // [G, D]
};

struct ModelWeights {
  ModelConfig config;
  Matrix token_embd;               // [V, D]
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;  // [D]
  Matrix output;                   // [V, D]; empty when tied to token_embd

  const Matrix& output_matrix() const { return output.empty() ? token_embd : output; }
  int depth() const { return static_cast<int>(layers.size()); }
  int64_t parameter_count() const;
};

}  // namespace duet
