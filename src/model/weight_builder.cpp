#include "model/weight_builder.h"

#include <map>

#include "core/check.h"
#include "io/dequant.h"

namespace duet {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

class Fetcher {
 public:
  explicit Fetcher(const TensorLookup& lookup) : lookup_(lookup) {}

  bool has(const std::string& name) const { return lookup_(name) != nullptr; }

  // Reads `name` as float32 and checks its shape equals `shape` (a 1-D tensor
  // of the same element count also matches a 2-D request of one row).
  Result<std::vector<float>> read(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorInfo* info = lookup_(name);
    if (!info) return make_error("checkpoint has no tensor '", name, "'");
    if (info->shape != shape) {
      return make_error("tensor '", name, "' has shape ", shape_text(info->shape), ", expected ", shape_text(shape));
    }
    return tensor_to_f32(*info);
  }

  // Quantized and 16-bit matrices also keep their encoded rows (PackedRows).
  Result<Matrix> matrix(const std::string& name, int64_t rows, int64_t cols) const {
    DUET_ASSIGN_OR_RETURN(std::vector<float> data, read(name, {rows, cols}));
    Matrix m{rows, cols, std::move(data), {}};
    const TensorInfo* info = lookup_(name);
    if (info->dtype != DType::F32) {
      m.packed.type = info->dtype;
      m.packed.row_bytes = static_cast<int64_t>(info->nbytes / rows);
      m.packed.bytes.assign(info->data, info->data + info->nbytes);
    }
    return m;
  }

 private:
  const TensorLookup& lookup_;
};

// Per-head norm gain [Dh] repeated into the per-head table [heads, Dh] that
// wide layers need (each half keeps its own gains).
Matrix head_gain_table(const std::vector<float>& gain, int heads) {
  Matrix out{heads, static_cast<int64_t>(gain.size()), {}, {}};
  for (int h = 0; h < heads; ++h) out.data.insert(out.data.end(), gain.begin(), gain.end());
  return out;
}

Result<LayerWeights> build_layer(const ModelConfig& c, const LayerWidths& widths, const Fetcher& f,
                                 const TensorNames& names, int i) {
  auto n = [&](const std::string& canonical) { return names.layer(i, canonical); };
  const int64_t D = c.dim, Dh = c.head_dim, Hq = widths.n_heads * Dh, Hkv = widths.n_kv_heads * Dh, F = widths.ffn_dim;
  LayerWeights l;
  l.n_heads = widths.n_heads;
  l.n_kv_heads = widths.n_kv_heads;
  l.ffn_dim = widths.ffn_dim;
  l.source_layers = {i};
  DUET_ASSIGN_OR_RETURN(l.attn_norm, f.read(n("attn_norm"), {D}));
  DUET_ASSIGN_OR_RETURN(l.attn_q, f.matrix(n("attn_q"), Hq, D));
  DUET_ASSIGN_OR_RETURN(l.attn_k, f.matrix(n("attn_k"), Hkv, D));
  DUET_ASSIGN_OR_RETURN(l.attn_v, f.matrix(n("attn_v"), Hkv, D));
  if (c.qkv_bias) {
    DUET_ASSIGN_OR_RETURN(l.attn_q_bias, f.read(n("attn_q.bias"), {Hq}));
    DUET_ASSIGN_OR_RETURN(l.attn_k_bias, f.read(n("attn_k.bias"), {Hkv}));
    DUET_ASSIGN_OR_RETURN(l.attn_v_bias, f.read(n("attn_v.bias"), {Hkv}));
  }
  if (c.qk_norm) {
    DUET_ASSIGN_OR_RETURN(std::vector<float> q_gain, f.read(n("attn_q_norm"), {Dh}));
    DUET_ASSIGN_OR_RETURN(std::vector<float> k_gain, f.read(n("attn_k_norm"), {Dh}));
    l.attn_q_norm = head_gain_table(q_gain, widths.n_heads);
    l.attn_k_norm = head_gain_table(k_gain, widths.n_kv_heads);
  }
  DUET_ASSIGN_OR_RETURN(l.attn_out, f.matrix(n("attn_output"), D, Hq));
  DUET_ASSIGN_OR_RETURN(l.ffn_norm, f.read(n("ffn_norm"), {D}));
  DUET_ASSIGN_OR_RETURN(l.ffn_gate, f.matrix(n("ffn_gate"), F, D));
  DUET_ASSIGN_OR_RETURN(l.ffn_up, f.matrix(n("ffn_up"), F, D));
  DUET_ASSIGN_OR_RETURN(l.ffn_down, f.matrix(n("ffn_down"), D, F));
  l.attn_packed_gains = Matrix{1, D, l.attn_norm, {}};
  l.ffn_packed_gains = Matrix{1, D, l.ffn_norm, {}};
  return l;
}

}  // namespace

TensorNames gguf_tensor_names() {
  TensorNames names;
  names.token_embd = "token_embd.weight";
  names.output_norm = "output_norm.weight";
  names.output = "output.weight";
  names.layer = [](int i, const std::string& canonical) {
    const bool is_bias = canonical.size() > 5 && canonical.compare(canonical.size() - 5, 5, ".bias") == 0;
    return "blk." + std::to_string(i) + "." + canonical + (is_bias ? "" : ".weight");
  };
  return names;
}

TensorNames hf_tensor_names() {
  static const std::map<std::string, std::string> kLayerNames = {
      {"attn_norm", "input_layernorm.weight"},      {"attn_q", "self_attn.q_proj.weight"},
      {"attn_k", "self_attn.k_proj.weight"},        {"attn_v", "self_attn.v_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},     {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},     {"attn_q_norm", "self_attn.q_norm.weight"},
      {"attn_k_norm", "self_attn.k_norm.weight"},   {"attn_output", "self_attn.o_proj.weight"},
      {"ffn_norm", "post_attention_layernorm.weight"}, {"ffn_gate", "mlp.gate_proj.weight"},
      {"ffn_up", "mlp.up_proj.weight"},             {"ffn_down", "mlp.down_proj.weight"},
  };
  TensorNames names;
  names.token_embd = "model.embed_tokens.weight";
  names.output_norm = "model.norm.weight";
  names.output = "lm_head.weight";
  names.layer = [](int i, const std::string& canonical) {
    return "model.layers." + std::to_string(i) + "." + kLayerNames.at(canonical);
  };
  return names;
}

Result<ModelWeights> build_weights(const ModelConfig& config, const TensorLookup& lookup,
                                   const TensorNames& names, const std::vector<LayerWidths>& widths) {
  DUET_CHECK(widths.empty() || static_cast<int>(widths.size()) == config.n_layers);
  Fetcher f(lookup);
  ModelWeights w;
  w.config = config;
  DUET_ASSIGN_OR_RETURN(w.token_embd, f.matrix(names.token_embd, config.vocab_size, config.dim));
  DUET_ASSIGN_OR_RETURN(w.output_norm, f.read(names.output_norm, {config.dim}));
  if (f.has(names.output) && !config.tied_embeddings) {
    DUET_ASSIGN_OR_RETURN(w.output, f.matrix(names.output, config.vocab_size, config.dim));
  }
  w.config.tied_embeddings = w.output.empty();
  w.layers.reserve(config.n_layers);
  for (int i = 0; i < config.n_layers; ++i) {
    const LayerWidths layer_widths =
        widths.empty() ? LayerWidths{config.n_heads, config.n_kv_heads, config.ffn_dim} : widths[i];
    DUET_ASSIGN_OR_RETURN(LayerWeights layer, build_layer(config, layer_widths, f, names, i));
    w.layers.push_back(std::move(layer));
  }
  return w;
}

}  // namespace duet
