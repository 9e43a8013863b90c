// Shared test helpers: tiny random models in memory and on disk (GGUF and HF
// safetensors, each in its format's own conventions), paths to fixtures and
// real models, and array comparisons.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.h"

namespace duet::test {

// The repository root (fixtures, models/).
std::string source_dir();
// models/<name>; fails the calling test (with the set-up hint) when absent.
std::string model_path(const std::string& name);
// A fresh empty directory under the system temp dir.
std::string temp_dir(const std::string& tag);

// Tiny configs of each supported family (random weights, all dims small).
ModelConfig tiny_llama_config();   // GQA, Llama-3 RoPE scaling, untied output
ModelConfig tiny_qwen2_config();   // QKV bias, tied embeddings
ModelConfig tiny_qwen3_config();   // per-head q/k norm, head_dim != D/H

// Random weights in HF conventions (RoPE pairs (i, i + Dh/2)); norm gains are
// 1 + noise so that folding them is exercised.
ModelWeights random_weights(const ModelConfig& config, uint64_t seed);

// Writes `weights` as HF safetensors + config.json into `dir` (returns dir).
std::string write_hf_checkpoint(const ModelWeights& weights, const std::string& dir);
// Writes `weights` as a GGUF file, with llama's Q/K rows permuted as
// llama.cpp's converter does, and a byte-level BPE vocab of 256 byte tokens
// plus the special tokens when the vocab is large enough.
std::string write_gguf_checkpoint(const ModelWeights& weights, const std::string& path);

// Every projection given random Q4_1 rows (PackedRows, as a quantized GGUF
// loads) with its float32 rows set to their decoded values; needs every
// projection's input width to be a multiple of 32. output_too: the output
// matrix (the embedding when tied) as well.
ModelWeights with_q4_1_rows(ModelWeights weights, bool output_too = false);

// The weights as the CUDA backend stores them: every matrix rounded to bf16
// (and encoded rows dropped, so the CPU reference reads the rounded values).
ModelWeights rounded_to_bf16(ModelWeights weights);

struct Diff {
  double max_abs = 0;
  int64_t argmax_index = -1;
};
Diff max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace duet::test
