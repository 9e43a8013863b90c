// ModelConfig and weights from GGUF metadata ("<arch>.block_count", ...).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "io/dequant.h"
#include "io/quote.h"
#include "model/loader.h"
#include "model/weight_builder.h"

namespace duet {
namespace {

Result<int> required_int(const GgufFile& file, const std::string& key) {
  auto value = file.get_int(key);
  if (!value) return make_error(file.path(), ": missing metadata key '", key, "'");
  if (*value <= 0 || *value > (1ll << 30)) return make_error(file.path(), ": metadata '", key, "' = ", *value, " is out of range");
  return static_cast<int>(*value);
}

// A key that may be missing (then `fallback`); present, it must be in 1..2^30.
Result<int> optional_int(const GgufFile& file, const std::string& key, int fallback) {
  if (!file.get_int(key)) return fallback;
  return required_int(file, key);
}

}  // namespace

Result<ModelConfig> config_from_gguf(const GgufFile& file) {
  auto arch = file.get_string("general.architecture");
  if (!arch) return make_error(file.path(), ": missing metadata key 'general.architecture'");
  ModelConfig c;
  if (*arch == "llama") {
    c.arch = Arch::Llama;
    // convert_hf_to_gguf permutes llama's Q/K rows so RoPE rotates adjacent pairs.
    c.rope_style = RopeStyle::Interleaved;
  } else if (*arch == "qwen2") {
    c.arch = Arch::Qwen2;
    c.qkv_bias = true;
  } else if (*arch == "qwen3") {
    c.arch = Arch::Qwen3;
    c.qk_norm = true;
  } else {
    return make_error(file.path(), ": unsupported architecture ", quote(*arch), " (supported: llama, qwen2, qwen3)");
  }
  const std::string p = *arch + ".";
  DUET_ASSIGN_OR_RETURN(c.n_layers, required_int(file, p + "block_count"));
  DUET_ASSIGN_OR_RETURN(c.dim, required_int(file, p + "embedding_length"));
  DUET_ASSIGN_OR_RETURN(c.ffn_dim, required_int(file, p + "feed_forward_length"));
  DUET_ASSIGN_OR_RETURN(c.n_heads, required_int(file, p + "attention.head_count"));
  DUET_ASSIGN_OR_RETURN(c.max_context, required_int(file, p + "context_length"));
  DUET_ASSIGN_OR_RETURN(c.n_kv_heads, optional_int(file, p + "attention.head_count_kv", c.n_heads));
  DUET_ASSIGN_OR_RETURN(c.head_dim, optional_int(file, p + "attention.key_length", std::max(1, c.dim / c.n_heads)));
  c.rms_eps = static_cast<float>(file.get_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = static_cast<float>(file.get_float(p + "rope.freq_base").value_or(10000.0));
  DUET_ASSIGN_OR_RETURN(const int rope_dims, optional_int(file, p + "rope.dimension_count", c.head_dim));
  if (rope_dims != c.head_dim) {
    return make_error(file.path(), ": partial RoPE (", rope_dims, " of ", c.head_dim, " head dims) is not supported");
  }
  const TensorInfo* embd = file.find_tensor("token_embd.weight");
  const int64_t embd_rows = embd != nullptr && embd->shape.size() == 2 ? embd->shape[0] : 0;
  DUET_ASSIGN_OR_RETURN(c.vocab_size, optional_int(file, p + "vocab_size",
                                                   static_cast<int>(std::min<int64_t>(embd_rows, INT32_MAX))));
  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  // Shapes first: the RoPE factors below allocate head_dim / 2 floats.
  if (Status valid = validate_config(c); !valid.ok()) return make_error(file.path(), ": ", valid.message());
  const std::string scaling = file.get_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    const float factor = static_cast<float>(file.get_float(p + "rope.scaling.factor").value_or(1.0));
    c.rope_freq_factors.assign(c.head_dim / 2, factor);
  } else if (scaling != "none") {
    return make_error(file.path(), ": RoPE scaling ", quote(scaling), " is not supported (supported: none, linear, llama3)");
  }
  // Llama 3 scaling travels as a tensor of per-frequency divisors.
  if (const TensorInfo* freqs = file.find_tensor("rope_freqs.weight")) {
    DUET_ASSIGN_OR_RETURN(c.rope_freq_factors, tensor_to_f32(*freqs));
  }
  if (Status valid = validate_config(c); !valid.ok()) return make_error(file.path(), ": ", valid.message());
  return c;
}

Result<ModelWeights> load_weights_gguf(const GgufFile& file) {
  DUET_ASSIGN_OR_RETURN(ModelConfig config, config_from_gguf(file));
  auto weights = build_weights(config, [&](const std::string& name) { return file.find_tensor(name); },
                               gguf_tensor_names());
  if (!weights.ok()) return make_error(file.path(), ": ", weights.message());
  return weights;
}

}  // namespace duet
