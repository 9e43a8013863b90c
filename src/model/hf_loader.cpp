// ModelConfig from HF config.json and weights from safetensors.
#include <nlohmann/json.hpp>

#include "model/loader.h"
#include "model/weight_builder.h"

namespace duet {
namespace {

using nlohmann::json;

Result<int> required_int(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer()) {
    return make_error("config.json: missing integer field '", key, "'");
  }
  const int64_t v = j[key].get<int64_t>();
  if (v <= 0 || v > (1ll << 30)) return make_error("config.json: '", key, "' = ", v, " is out of range");
  return static_cast<int>(v);
}

template <class T>
T value_or(const json& j, const char* key, T fallback) {
  return j.contains(key) && !j[key].is_null() ? j[key].get<T>() : fallback;
}

Status apply_rope_scaling(const json& scaling, ModelConfig& c) {
  if (scaling.is_null()) return ok_status();
  if (!scaling.is_object()) return make_error("config.json: 'rope_scaling' must be an object");
  const std::string type = value_or<std::string>(scaling, "rope_type", value_or<std::string>(scaling, "type", "default"));
  const float factor = value_or<float>(scaling, "factor", 1.0f);
  if (type == "default") return ok_status();
  if (type == "linear") {
    c.rope_freq_factors.assign(c.head_dim / 2, factor);
    return ok_status();
  }
  if (type == "llama3") {
    c.rope_freq_factors = llama3_rope_freq_factors(
        c.head_dim, c.rope_theta, factor, value_or<float>(scaling, "low_freq_factor", 1.0f),
        value_or<float>(scaling, "high_freq_factor", 4.0f),
        value_or<int>(scaling, "original_max_position_embeddings", 8192));
    return ok_status();
  }
  return make_error("config.json: RoPE scaling '", type, "' is not supported (supported: linear, llama3)");
}

}  // namespace

Result<ModelConfig> config_from_hf_json(const std::string& config_json) {
  json j = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return make_error("config.json: not valid JSON");
  try {
    const std::string type = value_or<std::string>(j, "model_type", "");
    ModelConfig c;
    c.rope_style = RopeStyle::HalfSplit;
    if (type == "llama" || type == "mistral") {
      c.arch = Arch::Llama;
      c.qkv_bias = value_or<bool>(j, "attention_bias", false);
    } else if (type == "qwen2") {
      c.arch = Arch::Qwen2;
      c.qkv_bias = true;
    } else if (type == "qwen3") {
      c.arch = Arch::Qwen3;
      c.qk_norm = true;
    } else {
      return make_error("config.json: unsupported model_type '", type, "' (supported: llama, mistral, qwen2, qwen3)");
    }
    DUET_ASSIGN_OR_RETURN(c.n_layers, required_int(j, "num_hidden_layers"));
    DUET_ASSIGN_OR_RETURN(c.dim, required_int(j, "hidden_size"));
    DUET_ASSIGN_OR_RETURN(c.ffn_dim, required_int(j, "intermediate_size"));
    DUET_ASSIGN_OR_RETURN(c.n_heads, required_int(j, "num_attention_heads"));
    DUET_ASSIGN_OR_RETURN(c.vocab_size, required_int(j, "vocab_size"));
    c.n_kv_heads = value_or<int>(j, "num_key_value_heads", c.n_heads);
    c.head_dim = value_or<int>(j, "head_dim", c.dim / c.n_heads);
    c.max_context = value_or<int>(j, "max_position_embeddings", 2048);
    c.rms_eps = value_or<float>(j, "rms_norm_eps", 1e-6f);
    c.tied_embeddings = value_or<bool>(j, "tie_word_embeddings", false);
    // transformers >= 5 writes theta and scaling together under "rope_parameters";
    // older configs have a top-level "rope_theta" and "rope_scaling".
    const json rope = j.contains("rope_parameters") && j["rope_parameters"].is_object() ? j["rope_parameters"] : json();
    c.rope_theta = value_or<float>(j, "rope_theta", rope.is_null() ? 10000.0f : value_or<float>(rope, "rope_theta", 10000.0f));
    DUET_TRY(apply_rope_scaling(j.contains("rope_scaling") && !j["rope_scaling"].is_null() ? j["rope_scaling"] : rope, c));
    DUET_TRY(validate_config(c));
    return c;
  } catch (const json::exception& e) {
    return make_error("config.json: a field has the wrong type (", e.what(), ")");
  }
}

Result<ModelWeights> load_weights_hf(const SafetensorsModel& tensors, const std::string& config_json) {
  DUET_ASSIGN_OR_RETURN(ModelConfig config, config_from_hf_json(config_json));
  auto weights = build_weights(config, [&](const std::string& name) { return tensors.find_tensor(name); },
                               hf_tensor_names());
  if (!weights.ok()) return make_error(tensors.directory(), ": ", weights.message());
  return weights;
}

}  // namespace duet
