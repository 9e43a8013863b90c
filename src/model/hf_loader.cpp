// ModelConfig from HF config.json and weights from safetensors.
#include <algorithm>
#include <cmath>
#include <optional>

#include "io/json_input.h"
#include "io/quote.h"
#include "model/loader.h"
#include "model/weight_builder.h"

namespace duet {
namespace {

using nlohmann::json;

constexpr int64_t kMaxIntField = int64_t{1} << 30;

// An integer field in 1..2^30. Missing (or null) gives `fallback` when there is
// one, else an error; a float or an out-of-range value is an error (converting
// 1e30 to int would be undefined behaviour, not a config).
Result<int> int_field(const json& j, const char* key, std::optional<int> fallback = std::nullopt) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return make_error("config.json: missing integer field '", key, "'");
  }
  if (!it->is_number_integer()) return make_error("config.json: '", key, "' = ", quote(it->dump()), " is not an integer");
  const int64_t v = it->get<int64_t>();
  if (v <= 0 || v > kMaxIntField) {
    return make_error("config.json: '", key, "' = ", v, " is out of range (expected 1..", kMaxIntField, ")");
  }
  return static_cast<int>(v);
}

template <class T>
T value_or(const json& j, const char* key, T fallback) {
  return j.contains(key) && !j[key].is_null() ? j[key].get<T>() : fallback;
}

// A positive finite float field (factors, theta, eps), or `fallback` when missing.
Result<float> positive_float(const json& j, const char* key, float fallback) {
  const float v = value_or<float>(j, key, fallback);
  if (!(std::isfinite(v) && v > 0)) return make_error("config.json: '", key, "' = ", v, " (expected a positive number)");
  return v;
}

// Runs after validate_config, so head_dim is sane before Dh/2 factors are allocated.
Status apply_rope_scaling(const json& scaling, ModelConfig& c) {
  if (scaling.is_null()) return ok_status();
  if (!scaling.is_object()) return make_error("config.json: 'rope_scaling' must be an object");
  const std::string type = value_or<std::string>(scaling, "rope_type", value_or<std::string>(scaling, "type", "default"));
  if (type == "default") return ok_status();
  DUET_ASSIGN_OR_RETURN(const float factor, positive_float(scaling, "factor", 1.0f));
  if (type == "linear") {
    c.rope_freq_factors.assign(c.head_dim / 2, factor);
    return ok_status();
  }
  if (type == "llama3") {
    DUET_ASSIGN_OR_RETURN(const float low, positive_float(scaling, "low_freq_factor", 1.0f));
    DUET_ASSIGN_OR_RETURN(const float high, positive_float(scaling, "high_freq_factor", 4.0f));
    DUET_ASSIGN_OR_RETURN(const int original, int_field(scaling, "original_max_position_embeddings", 8192));
    if (!(high > low)) {
      return make_error("config.json: rope_scaling high_freq_factor ", high, " must exceed low_freq_factor ", low);
    }
    c.rope_freq_factors = llama3_rope_freq_factors(c.head_dim, c.rope_theta, factor, low, high, original);
    return ok_status();
  }
  return make_error("config.json: RoPE scaling ", quote(type), " is not supported (supported: linear, llama3)");
}

}  // namespace

Result<ModelConfig> config_from_hf_json(const std::string& config_json) {
  DUET_ASSIGN_OR_RETURN(json j, parse_json_input("config.json", config_json));
  if (!j.is_object()) return make_error("config.json: not a JSON object");
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
      return make_error("config.json: unsupported model_type ", quote(type), " (supported: llama, mistral, qwen2, qwen3)");
    }
    DUET_ASSIGN_OR_RETURN(c.n_layers, int_field(j, "num_hidden_layers"));
    DUET_ASSIGN_OR_RETURN(c.dim, int_field(j, "hidden_size"));
    DUET_ASSIGN_OR_RETURN(c.ffn_dim, int_field(j, "intermediate_size"));
    DUET_ASSIGN_OR_RETURN(c.n_heads, int_field(j, "num_attention_heads"));
    DUET_ASSIGN_OR_RETURN(c.vocab_size, int_field(j, "vocab_size"));
    DUET_ASSIGN_OR_RETURN(c.n_kv_heads, int_field(j, "num_key_value_heads", c.n_heads));
    DUET_ASSIGN_OR_RETURN(c.head_dim, int_field(j, "head_dim", std::max(1, c.dim / c.n_heads)));
    DUET_ASSIGN_OR_RETURN(c.max_context, int_field(j, "max_position_embeddings", 2048));
    c.rms_eps = value_or<float>(j, "rms_norm_eps", 1e-6f);
    c.tied_embeddings = value_or<bool>(j, "tie_word_embeddings", false);
    // transformers >= 5 writes theta and scaling together under "rope_parameters";
    // older configs have a top-level "rope_theta" and "rope_scaling".
    const json rope = j.contains("rope_parameters") && j["rope_parameters"].is_object() ? j["rope_parameters"] : json();
    c.rope_theta = value_or<float>(j, "rope_theta", rope.is_null() ? 10000.0f : value_or<float>(rope, "rope_theta", 10000.0f));
    // Shapes first (the RoPE factors allocate head_dim / 2 floats), then the factors.
    const auto validate = [&]() -> Status {
      if (Status valid = validate_config(c); !valid.ok()) return make_error("config.json: ", valid.message());
      return ok_status();
    };
    DUET_TRY(validate());
    DUET_TRY(apply_rope_scaling(j.contains("rope_scaling") && !j["rope_scaling"].is_null() ? j["rope_scaling"] : rope, c));
    DUET_TRY(validate());
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
