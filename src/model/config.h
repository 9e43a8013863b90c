// ModelConfig: the shape and numerics of a Llama-family decoder, as read from a
// checkpoint (GGUF metadata or HF config.json) or taken from the named-shape table.
#pragma once

#include <string>
#include <vector>

namespace duet {

enum class Arch { Llama, Qwen2, Qwen3 };

// Most layers a model may have (validate_config); also bounds LP plan layer
// indices, so a plan file cannot name a billion pairs.
inline constexpr int kMaxLayers = 1024;

// How RoPE pairs the dimensions of a head.
//   Interleaved: pairs (2i, 2i+1). GGUF llama checkpoints (the converter permutes Q/K rows).
//   HalfSplit:   pairs (i, i + Dh/2). HF checkpoints, and qwen2/qwen3 in GGUF ("neox").
enum class RopeStyle { Interleaved, HalfSplit };

struct ModelConfig {
  Arch arch = Arch::Llama;
  int n_layers = 0;    // L
  int dim = 0;         // D
  int n_heads = 0;     // H
  int n_kv_heads = 0;  // Hkv
  int head_dim = 0;    // Dh
  int ffn_dim = 0;     // F
  int vocab_size = 0;  // V
  int max_context = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::HalfSplit;
  // [Dh/2] divisors of the RoPE frequencies (Llama 3 / linear scaling); empty = none.
  std::vector<float> rope_freq_factors;
  bool qkv_bias = false;  // qwen2
  bool qk_norm = false;   // qwen3: per-head RMSNorm of q and k before RoPE
  bool tied_embeddings = false;
};

const char* arch_name(Arch arch);

// Llama-3 style frequency factors ("rope_type": "llama3") as HF computes them.
std::vector<float> llama3_rope_freq_factors(int head_dim, float theta, float factor,
                                            float low_freq_factor, float high_freq_factor,
                                            int original_max_position);

}  // namespace duet
