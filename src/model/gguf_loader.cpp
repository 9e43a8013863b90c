// ModelConfig and weights from GGUF metadata ("<arch>.block_count", ...).
//
// Architectures: llama, qwen2, qwen3, and deci: llama.cpp's Llama block whose
// head counts and FFN width may differ per layer (per-layer arrays under
// deci.attention.head_count, .head_count_kv, deci.feed_forward_length), with
// llama's adjacent-pair RoPE rows and optional q/k/v biases. duet export
// writes LP models as deci, with the LP pairs in duet.lp.pairs and
// duet.lp.original_depth so that each wide layer knows its source layers.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "io/dequant.h"
#include "io/quote.h"
#include "model/loader.h"
#include "model/lp_plan.h"
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

// A per-layer key: one value for every layer, or an array of n_layers values.
Result<std::vector<int>> per_layer_ints(const GgufFile& file, const std::string& key, int n_layers) {
  if (auto value = file.get_int(key)) return std::vector<int>(n_layers, static_cast<int>(std::clamp<int64_t>(*value, -1, 1ll << 30)));
  auto values = file.get_int_array(key);
  if (!values) return make_error(file.path(), ": missing metadata key '", key, "' (an integer or one per layer)");
  if (static_cast<int>(values->size()) != n_layers) {
    return make_error(file.path(), ": metadata '", key, "' has ", values->size(), " entries for ", n_layers, " layers");
  }
  std::vector<int> out;
  for (int64_t v : *values) out.push_back(static_cast<int>(std::clamp<int64_t>(v, -1, 1ll << 30)));
  return out;
}

// The per-layer widths of a deci file, each checked like a config (a layer
// without attention or FFN, as in Nemotron-51B, is rejected by the check).
Result<std::vector<LayerWidths>> deci_layer_widths(const GgufFile& file, const ModelConfig& base) {
  const int L = base.n_layers;
  DUET_ASSIGN_OR_RETURN(std::vector<int> heads, per_layer_ints(file, "deci.attention.head_count", L));
  std::vector<int> kv_heads = heads;
  if (file.find("deci.attention.head_count_kv")) {
    DUET_ASSIGN_OR_RETURN(kv_heads, per_layer_ints(file, "deci.attention.head_count_kv", L));
  }
  DUET_ASSIGN_OR_RETURN(std::vector<int> ffn, per_layer_ints(file, "deci.feed_forward_length", L));
  std::vector<LayerWidths> widths;
  for (int i = 0; i < L; ++i) {
    ModelConfig layer = base;
    layer.n_heads = heads[i];
    layer.n_kv_heads = kv_heads[i];
    layer.ffn_dim = ffn[i];
    if (Status valid = validate_config(layer); !valid.ok()) {
      return make_error(file.path(), ": layer ", i, ": ", valid.message());
    }
    widths.push_back({heads[i], kv_heads[i], ffn[i]});
  }
  return widths;
}

// Source layers of each layer from duet export's LP metadata (one per layer
// when absent): a wide layer of the plan computes original layers i and i+1.
Status read_lp_source_layers(const GgufFile& file, ModelWeights& weights) {
  const auto pairs = file.get_int_array("duet.lp.pairs");
  const auto original_depth = file.get_int("duet.lp.original_depth");
  if (!pairs && !original_depth) return ok_status();
  if (!pairs || !original_depth) {
    return make_error(file.path(), ": metadata has only one of duet.lp.pairs and duet.lp.original_depth");
  }
  LpPlan plan;
  for (int64_t p : *pairs) {
    if (p < 0 || p > (1 << 20)) return make_error(file.path(), ": duet.lp.pairs holds layer ", p);
    plan.pair_starts.push_back(static_cast<int>(p));
  }
  const int depth = static_cast<int>(std::clamp<int64_t>(*original_depth, 0, 1 << 20));
  if (Status valid = validate_lp_plan(plan, depth); !valid.ok()) {
    return make_error(file.path(), ": duet.lp.pairs: ", valid.message());
  }
  if (plan.effective_depth(depth) != weights.depth()) {
    return make_error(file.path(), ": duet.lp.pairs (", plan.describe(), ") on ", depth, " original layers give ",
                      plan.effective_depth(depth), " layers, but the file has ", weights.depth());
  }
  size_t next_pair = 0;
  for (int i = 0, layer = 0; i < depth; ++i, ++layer) {
    if (next_pair < plan.pair_starts.size() && plan.pair_starts[next_pair] == i) {
      weights.layers[layer].source_layers = {i, i + 1};
      ++next_pair;
      ++i;
    } else {
      weights.layers[layer].source_layers = {i};
    }
  }
  return ok_status();
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
  } else if (*arch == "deci") {
    // A Llama block in llama.cpp's graph, Q/K rows in adjacent-pair order.
    c.arch = Arch::Llama;
    c.rope_style = RopeStyle::Interleaved;
    c.qkv_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  } else {
    return make_error(file.path(), ": unsupported architecture ", quote(*arch), " (supported: llama, qwen2, qwen3, deci)");
  }
  const std::string p = *arch + ".";
  DUET_ASSIGN_OR_RETURN(c.n_layers, required_int(file, p + "block_count"));
  DUET_ASSIGN_OR_RETURN(c.dim, required_int(file, p + "embedding_length"));
  DUET_ASSIGN_OR_RETURN(c.max_context, required_int(file, p + "context_length"));
  const bool per_layer_widths = *arch == "deci";
  if (per_layer_widths) {
    // Layer 0's widths for the shape check below (llama.cpp's head-dim default reads layer 0's head
    // count); the narrowest layer's widths replace them at the end.
    DUET_ASSIGN_OR_RETURN(std::vector<int> heads, per_layer_ints(file, p + "attention.head_count", c.n_layers));
    DUET_ASSIGN_OR_RETURN(std::vector<int> ffn, per_layer_ints(file, p + "feed_forward_length", c.n_layers));
    c.n_heads = c.n_kv_heads = heads[0];
    c.ffn_dim = ffn[0];
  } else {
    DUET_ASSIGN_OR_RETURN(c.ffn_dim, required_int(file, p + "feed_forward_length"));
    DUET_ASSIGN_OR_RETURN(c.n_heads, required_int(file, p + "attention.head_count"));
    DUET_ASSIGN_OR_RETURN(c.n_kv_heads, optional_int(file, p + "attention.head_count_kv", c.n_heads));
  }
  DUET_ASSIGN_OR_RETURN(c.head_dim, optional_int(file, p + "attention.key_length",
                                                 std::max(1, c.n_heads > 0 ? c.dim / c.n_heads : 1)));
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
  if (per_layer_widths) {
    // Each layer is checked with its own widths; the config takes those of the
    // narrowest layer (an original layer of an LP file), each layer keeps its own.
    DUET_ASSIGN_OR_RETURN(const std::vector<LayerWidths> widths, deci_layer_widths(file, c));
    const LayerWidths narrowest = *std::min_element(
        widths.begin(), widths.end(), [](const LayerWidths& a, const LayerWidths& b) { return a.n_heads < b.n_heads; });
    c.n_heads = narrowest.n_heads;
    c.n_kv_heads = narrowest.n_kv_heads;
    c.ffn_dim = narrowest.ffn_dim;
  }
  if (Status valid = validate_config(c); !valid.ok()) return make_error(file.path(), ": ", valid.message());
  return c;
}

Result<ModelWeights> load_weights_gguf(const GgufFile& file) {
  DUET_ASSIGN_OR_RETURN(ModelConfig config, config_from_gguf(file));
  std::vector<LayerWidths> widths;
  if (file.get_string("general.architecture") == "deci") {
    DUET_ASSIGN_OR_RETURN(widths, deci_layer_widths(file, config));
  }
  auto weights = build_weights(config, [&](const std::string& name) { return file.find_tensor(name); },
                               gguf_tensor_names(), widths);
  if (!weights.ok()) return make_error(file.path(), ": ", weights.message());
  DUET_TRY(read_lp_source_layers(file, *weights));
  return weights;
}

}  // namespace duet
