// export_gguf: a LoadedModel as a `deci` GGUF file.
//
// What llama.cpp's deci loader (vendored in llama-cpp-python 0.3.36,
// src/models/deci.cpp and llama-model.cpp) needs, and how it is written:
//   - per-layer arrays deci.attention.head_count, .head_count_kv and
//     deci.feed_forward_length (int32, one entry per layer);
//   - deci.attention.key_length / value_length and deci.rope.dimension_count =
//     Dh, since a wide layer 0 would otherwise give D / (2H); llama.cpp
//     requires n_rot == Dh for deci;
//   - rms epsilon and rope freq base; scaled RoPE as rope_freqs.weight [Dh/2]
//     (per-frequency divisors; duet keeps linear scaling the same way), so
//     rope.scaling.type is "none";
//   - Q/K rows (and their biases) in adjacent-pair RoPE order: deci uses
//     llama.cpp's "normal" RoPE, so half-split checkpoints (HF-derived qwen2)
//     have their rows permuted within each head, the permutation
//     convert_hf_to_gguf.py applies to llama;
//   - q/k/v biases are optional per layer (create_tensor_qkv), so qwen2 exports;
//     qwen3's q/k norms have no deci tensor, so qwen3 is refused;
//   - tied embeddings: no output.weight (llama.cpp then reuses token_embd);
//   - the tokenizer: every tokenizer.* key of the source GGUF, in its own type.
// 1-D tensors (norm gains, biases, rope factors) stay F32 as llama.cpp keeps
// them; 2-D matrices take the export type, except that Q8_0 falls back to F16
// for a matrix whose rows are not a multiple of 32 (a Q8_0 block).
// duet.lp.pairs / duet.lp.original_depth record which layers are LP pairs.
#include "model/gguf_export.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "io/gguf.h"
#include "io/quantize.h"
#include "model/loader.h"

namespace duet {
namespace fs = std::filesystem;

namespace {

DType matrix_dtype(ExportType type) {
  switch (type) {
    case ExportType::F32: return DType::F32;
    case ExportType::F16: return DType::F16;
    case ExportType::BF16: return DType::BF16;
    case ExportType::Q8_0: return DType::Q8_0;
  }
  return DType::F32;
}

// llama_ftype values (llama.h), shown by llama.cpp when it loads the file.
uint32_t llama_file_type(ExportType type) {
  switch (type) {
    case ExportType::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case ExportType::F16: return 1;   // LLAMA_FTYPE_MOSTLY_F16
    case ExportType::Q8_0: return 7;  // LLAMA_FTYPE_MOSTLY_Q8_0
    case ExportType::BF16: return 32; // LLAMA_FTYPE_MOSTLY_BF16
  }
  return 0;
}

// Row r of the result is row source_row(r) of m, where within each head of Dh
// rows the half-split pair (i, i + Dh/2) moves to the adjacent pair (2i, 2i+1).
int64_t half_split_source_row(int64_t r, int head_dim) {
  const int64_t head = r / head_dim, within = r % head_dim;
  const int64_t i = within / 2, half = within % 2;
  return head * head_dim + half * (head_dim / 2) + i;
}

std::vector<float> adjacent_pair_rows(const std::vector<float>& data, int64_t rows, int64_t cols, int head_dim) {
  std::vector<float> out(data.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = data.data() + half_split_source_row(r, head_dim) * cols;
    std::copy(src, src + cols, out.data() + r * cols);
  }
  return out;
}

class TensorSink {
 public:
  TensorSink(GgufWriter& writer, ExportType type) : writer_(writer), type_(type) {}

  // A 1-D tensor, always F32.
  void vector(const std::string& name, const std::vector<float>& values) {
    writer_.add_tensor_f32(name, {static_cast<int64_t>(values.size())}, values);
  }

  // A [rows, cols] matrix in the export type (Q8_0 needs cols % 32 == 0).
  void matrix(const std::string& name, int64_t rows, int64_t cols, const std::vector<float>& data) {
    DType dtype = matrix_dtype(type_);
    if (cols % dtype_block_elems(dtype) != 0) dtype = DType::F16;
    writer_.add_tensor(name, dtype, {rows, cols}, encode_f32(data.data(), rows * cols, dtype));
  }

 private:
  GgufWriter& writer_;
  ExportType type_;
};

Status check_matrix(const Matrix& m, const std::string& name, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols || static_cast<int64_t>(m.data.size()) != rows * cols) {
    return make_error("cannot export: tensor '", name, "' is [", m.rows, ", ", m.cols, "] with ", m.data.size(),
                      " float32 values, expected [", rows, ", ", cols, "]");
  }
  return ok_status();
}

Status check_vector(const std::vector<float>& v, const std::string& name, int64_t n) {
  if (static_cast<int64_t>(v.size()) != n) {
    return make_error("cannot export: tensor '", name, "' has ", v.size(), " values, expected ", n);
  }
  return ok_status();
}

// Everything llama.cpp's deci graph cannot express, and shapes that disagree
// with the layer's own widths, before anything is written.
Status check_weights(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  if (c.qk_norm) {
    return make_error("cannot export a ", arch_name(c.arch), " model: its per-head q/k norms have no tensor in llama.cpp's "
                      "deci architecture (supported: llama, qwen2)");
  }
  const int64_t D = c.dim, Dh = c.head_dim, V = c.vocab_size;
  DUET_TRY(check_matrix(w.token_embd, "token_embd", V, D));
  DUET_TRY(check_vector(w.output_norm, "output_norm", D));
  if (!w.output.empty()) DUET_TRY(check_matrix(w.output, "output", V, D));
  for (int i = 0; i < w.depth(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    const int64_t Hq = int64_t(l.n_heads) * Dh, Hkv = int64_t(l.n_kv_heads) * Dh, F = l.ffn_dim;
    if (l.n_heads <= 0 || l.n_kv_heads <= 0 || l.n_heads % l.n_kv_heads != 0 || F <= 0) {
      return make_error("cannot export: layer ", i, " has ", l.n_heads, " query heads, ", l.n_kv_heads,
                        " KV heads and FFN width ", F);
    }
    DUET_TRY(check_vector(l.attn_norm, p + "attn_norm", D));
    DUET_TRY(check_matrix(l.attn_q, p + "attn_q", Hq, D));
    DUET_TRY(check_matrix(l.attn_k, p + "attn_k", Hkv, D));
    DUET_TRY(check_matrix(l.attn_v, p + "attn_v", Hkv, D));
    const bool bias = !l.attn_q_bias.empty() || !l.attn_k_bias.empty() || !l.attn_v_bias.empty();
    if (bias) {
      DUET_TRY(check_vector(l.attn_q_bias, p + "attn_q.bias", Hq));
      DUET_TRY(check_vector(l.attn_k_bias, p + "attn_k.bias", Hkv));
      DUET_TRY(check_vector(l.attn_v_bias, p + "attn_v.bias", Hkv));
    }
    DUET_TRY(check_matrix(l.attn_out, p + "attn_output", D, Hq));
    DUET_TRY(check_vector(l.ffn_norm, p + "ffn_norm", D));
    DUET_TRY(check_matrix(l.ffn_gate, p + "ffn_gate", F, D));
    DUET_TRY(check_matrix(l.ffn_up, p + "ffn_up", F, D));
    DUET_TRY(check_matrix(l.ffn_down, p + "ffn_down", D, F));
  }
  return ok_status();
}

// The LP pairs (first original layer of each) from the layers' source layers,
// which must cover the original layers 0..depth-1 in order.
Status lp_pairs(const ModelWeights& w, std::vector<int32_t>& pairs, int& original_depth) {
  original_depth = 0;
  for (int i = 0; i < w.depth(); ++i) {
    const std::vector<int>& s = w.layers[i].source_layers;
    const bool consecutive = (s.size() == 1 && s[0] == original_depth) ||
                             (s.size() == 2 && s[0] == original_depth && s[1] == original_depth + 1);
    if (!consecutive) {
      return make_error("cannot export: layer ", i, "'s source layers do not continue from original layer ",
                        original_depth, " (expected one layer or one LP pair)");
    }
    if (s.size() == 2) pairs.push_back(s[0]);
    original_depth += static_cast<int>(s.size());
  }
  return ok_status();
}

// The source GGUF's tokenizer.* metadata (the export carries no tokenizer of
// its own making).
Result<GgufFile> tokenizer_source(const std::string& model_path, int vocab_size) {
  DUET_ASSIGN_OR_RETURN(CheckpointFormat format, detect_checkpoint_format(model_path));
  if (format != CheckpointFormat::Gguf) {
    return make_error("cannot export '", model_path, "': export copies the tokenizer metadata of a GGUF source; "
                      "convert the HF checkpoint to GGUF first (llama.cpp's convert_hf_to_gguf.py)");
  }
  DUET_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(model_path));
  if (!file.get_string("tokenizer.ggml.model")) {
    return make_error("cannot export '", model_path, "': it has no tokenizer metadata (tokenizer.ggml.model)");
  }
  const auto tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || static_cast<int>(tokens->size()) != vocab_size) {
    return make_error("cannot export '", model_path, "': its tokenizer has ", tokens ? tokens->size() : 0,
                      " tokens but the embeddings have ", vocab_size, " rows (llama.cpp needs them equal)");
  }
  return file;
}

}  // namespace

Result<ExportType> parse_export_type(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (lower == "f32") return ExportType::F32;
  if (lower == "f16") return ExportType::F16;
  if (lower == "bf16") return ExportType::BF16;
  if (lower == "q8_0") return ExportType::Q8_0;
  return make_error("unknown export type '", name, "' (expected f32, f16, bf16 or q8_0)");
}

Status check_exportable(const LoadedModel& model) {
  DUET_TRY(check_weights(model.weights));
  std::vector<int32_t> pairs;
  int original_depth = 0;
  DUET_TRY(lp_pairs(model.weights, pairs, original_depth));
  DUET_TRY(tokenizer_source(model.path, model.weights.config.vocab_size));
  return ok_status();
}

Status export_gguf(const LoadedModel& model, ExportType type, const std::string& path) {
  const ModelWeights& w = model.weights;
  const ModelConfig& c = w.config;
  DUET_TRY(check_weights(w));
  std::vector<int32_t> pairs;
  int original_depth = 0;
  DUET_TRY(lp_pairs(w, pairs, original_depth));
  std::error_code ec;
  if (fs::exists(path, ec) && fs::equivalent(path, model.path, ec)) {
    return make_error("cannot export to '", path, "': it is the source model");
  }
  DUET_ASSIGN_OR_RETURN(GgufFile source, tokenizer_source(model.path, c.vocab_size));

  GgufWriter g;
  g.add_string("general.architecture", "deci");
  if (auto name = source.get_string("general.name")) g.add_string("general.name", *name);
  g.add_uint32("general.file_type", llama_file_type(type));
  g.add_uint32("deci.block_count", static_cast<uint32_t>(w.depth()));
  g.add_uint32("deci.context_length", static_cast<uint32_t>(c.max_context));
  g.add_uint32("deci.embedding_length", static_cast<uint32_t>(c.dim));
  g.add_uint32("deci.vocab_size", static_cast<uint32_t>(c.vocab_size));
  std::vector<int32_t> heads, kv_heads, ffn;
  for (const LayerWeights& l : w.layers) {
    heads.push_back(l.n_heads);
    kv_heads.push_back(l.n_kv_heads);
    ffn.push_back(l.ffn_dim);
  }
  g.add_int_array("deci.attention.head_count", heads);
  g.add_int_array("deci.attention.head_count_kv", kv_heads);
  g.add_int_array("deci.feed_forward_length", ffn);
  g.add_uint32("deci.attention.key_length", static_cast<uint32_t>(c.head_dim));
  g.add_uint32("deci.attention.value_length", static_cast<uint32_t>(c.head_dim));
  g.add_uint32("deci.rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  g.add_float("deci.attention.layer_norm_rms_epsilon", c.rms_eps);
  g.add_float("deci.rope.freq_base", c.rope_theta);
  g.add_string("deci.rope.scaling.type", "none");
  if (!pairs.empty()) {
    g.add_int_array("duet.lp.pairs", pairs);
    g.add_uint32("duet.lp.original_depth", static_cast<uint32_t>(original_depth));
  }
  for (const auto& [key, value] : source.metadata()) {
    if (key.rfind("tokenizer.", 0) == 0) g.add_value(key, value);
  }

  TensorSink t(g, type);
  const int64_t D = c.dim;
  const int Dh = c.head_dim;
  t.matrix("token_embd.weight", w.token_embd.rows, D, w.token_embd.data);
  t.vector("output_norm.weight", w.output_norm);
  if (!w.output.empty()) t.matrix("output.weight", w.output.rows, D, w.output.data);
  if (!c.rope_freq_factors.empty()) t.vector("rope_freqs.weight", c.rope_freq_factors);
  const bool permute = c.rope_style == RopeStyle::HalfSplit;
  auto rope_rows = [&](const std::vector<float>& data, int64_t rows, int64_t cols) {
    return permute ? adjacent_pair_rows(data, rows, cols, Dh) : data;
  };
  for (int i = 0; i < w.depth(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    t.vector(p + "attn_norm.weight", l.attn_norm);
    t.matrix(p + "attn_q.weight", l.attn_q.rows, D, rope_rows(l.attn_q.data, l.attn_q.rows, D));
    t.matrix(p + "attn_k.weight", l.attn_k.rows, D, rope_rows(l.attn_k.data, l.attn_k.rows, D));
    t.matrix(p + "attn_v.weight", l.attn_v.rows, D, l.attn_v.data);
    if (!l.attn_q_bias.empty()) {
      t.vector(p + "attn_q.bias", rope_rows(l.attn_q_bias, l.attn_q.rows, 1));
      t.vector(p + "attn_k.bias", rope_rows(l.attn_k_bias, l.attn_k.rows, 1));
      t.vector(p + "attn_v.bias", l.attn_v_bias);
    }
    t.matrix(p + "attn_output.weight", D, l.attn_out.cols, l.attn_out.data);
    t.vector(p + "ffn_norm.weight", l.ffn_norm);
    t.matrix(p + "ffn_gate.weight", l.ffn_gate.rows, D, l.ffn_gate.data);
    t.matrix(p + "ffn_up.weight", l.ffn_up.rows, D, l.ffn_up.data);
    t.matrix(p + "ffn_down.weight", D, l.ffn_down.cols, l.ffn_down.data);
  }
  if (Status written = g.write(path); !written.ok()) {
    fs::remove(path, ec);  // no half-written model left behind
    return written;
  }
  return ok_status();
}

}  // namespace duet
