// Loading a checkpoint into ModelWeights (float32).
//
// Paths: a .gguf file, or HF safetensors (a directory with config.json, a
// .safetensors file next to its config.json, or a *.safetensors.index.json).
// Supported architectures: llama (Llama 2/3, Mistral, SmolLM2), qwen2, qwen3.
#pragma once

#include <string>

#include "core/result.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/weights.h"

namespace duet {

enum class CheckpointFormat { Gguf, Safetensors };

// Chooses the format from the path (extension, or a directory for HF).
Result<CheckpointFormat> detect_checkpoint_format(const std::string& path);

Result<ModelWeights> load_weights(const std::string& path);
// The config alone (no tensors are read).
Result<ModelConfig> load_config(const std::string& path);
Result<ModelWeights> load_weights_gguf(const GgufFile& file);
// `config_json`: the text of HF config.json.
Result<ModelWeights> load_weights_hf(const SafetensorsModel& tensors, const std::string& config_json);

Result<ModelConfig> config_from_gguf(const GgufFile& file);
Result<ModelConfig> config_from_hf_json(const std::string& config_json);

// Rejects shapes that cannot be a real model (zero or absurd sizes, heads not
// dividing, GQA group mismatch) before anything is allocated.
Status validate_config(const ModelConfig& config);

}  // namespace duet
