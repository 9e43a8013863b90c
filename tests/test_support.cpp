#include "test_support.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <random>

#include "core/half.h"
#include "io/dequant.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace duet::test {
namespace fs = std::filesystem;

std::string source_dir() {
  if (const char* env = std::getenv("DUET_SOURCE_DIR")) return env;
  return DUET_SOURCE_DIR;
}

std::string model_path(const std::string& name) {
  const std::string path = source_dir() + "/models/" + name;
  if (!fs::exists(path)) {
    ADD_FAILURE() << "missing " << path << ": run tools/setup.sh (README command 1) to fetch the models";
  }
  return path;
}

std::string temp_dir(const std::string& tag) {
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path() /
                       ("duet_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

ModelConfig tiny_llama_config() {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.n_layers = 6;
  c.dim = 64;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 96;
  c.vocab_size = 300;
  c.max_context = 128;
  c.rms_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  c.rope_style = RopeStyle::HalfSplit;
  c.rope_freq_factors = llama3_rope_freq_factors(c.head_dim, c.rope_theta, 8.0f, 1.0f, 4.0f, 64);
  return c;
}

ModelConfig tiny_qwen2_config() {
  ModelConfig c = tiny_llama_config();
  c.arch = Arch::Qwen2;
  c.rope_freq_factors.clear();
  c.rope_theta = 1000000.0f;
  c.qkv_bias = true;
  c.tied_embeddings = true;
  c.rms_eps = 1e-6f;
  return c;
}

ModelConfig tiny_qwen3_config() {
  ModelConfig c = tiny_qwen2_config();
  c.arch = Arch::Qwen3;
  c.qkv_bias = false;
  c.qk_norm = true;
  c.head_dim = 32;  // H * Dh = 128 != D: qwen3 decouples head_dim from D/H
  return c;
}

namespace {

Matrix random_matrix(std::mt19937_64& rng, int64_t rows, int64_t cols, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  Matrix m{rows, cols, std::vector<float>(rows * cols), {}};
  for (float& v : m.data) v = normal(rng);
  return m;
}

std::vector<float> random_gain(std::mt19937_64& rng, int64_t n) {
  std::uniform_real_distribution<float> noise(0.8f, 1.2f);
  std::vector<float> g(n);
  for (float& v : g) v = noise(rng);
  return g;
}

std::vector<float> random_vector(std::mt19937_64& rng, int64_t n, float scale) {
  return random_matrix(rng, 1, n, scale).data;
}

}  // namespace

ModelWeights random_weights(const ModelConfig& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t D = c.dim, Hq = int64_t(c.n_heads) * c.head_dim, Hkv = int64_t(c.n_kv_heads) * c.head_dim;
  const float s_in = 1.0f / std::sqrt(float(D)), s_attn = 1.0f / std::sqrt(float(Hq)),
              s_ffn = 1.0f / std::sqrt(float(c.ffn_dim));
  ModelWeights w;
  w.config = c;
  w.token_embd = random_matrix(rng, c.vocab_size, D, 1.0f);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights l;
    l.n_heads = c.n_heads;
    l.n_kv_heads = c.n_kv_heads;
    l.ffn_dim = c.ffn_dim;
    l.source_layers = {i};
    l.attn_norm = random_gain(rng, D);
    l.attn_q = random_matrix(rng, Hq, D, s_in);
    l.attn_k = random_matrix(rng, Hkv, D, s_in);
    l.attn_v = random_matrix(rng, Hkv, D, s_in);
    if (c.qkv_bias) {
      l.attn_q_bias = random_vector(rng, Hq, 0.1f);
      l.attn_k_bias = random_vector(rng, Hkv, 0.1f);
      l.attn_v_bias = random_vector(rng, Hkv, 0.1f);
    }
    if (c.qk_norm) {
      // One gain vector per layer, shared by its heads as in the checkpoints.
      const std::vector<float> q = random_gain(rng, c.head_dim), k = random_gain(rng, c.head_dim);
      for (int h = 0; h < c.n_heads; ++h) l.attn_q_norm.data.insert(l.attn_q_norm.data.end(), q.begin(), q.end());
      for (int h = 0; h < c.n_kv_heads; ++h) l.attn_k_norm.data.insert(l.attn_k_norm.data.end(), k.begin(), k.end());
      l.attn_q_norm.rows = c.n_heads;
      l.attn_k_norm.rows = c.n_kv_heads;
      l.attn_q_norm.cols = l.attn_k_norm.cols = c.head_dim;
    }
    l.attn_out = random_matrix(rng, D, Hq, s_attn);
    l.ffn_norm = random_gain(rng, D);
    l.ffn_gate = random_matrix(rng, c.ffn_dim, D, s_in);
    l.ffn_up = random_matrix(rng, c.ffn_dim, D, s_in);
    l.ffn_down = random_matrix(rng, D, c.ffn_dim, s_ffn);
    w.layers.push_back(std::move(l));
  }
  w.output_norm = random_gain(rng, D);
  if (!c.tied_embeddings) w.output = random_matrix(rng, c.vocab_size, D, s_in);
  return w;
}

namespace {

std::vector<int64_t> shape_of(const Matrix& m) { return {m.rows, m.cols}; }

const char* hf_model_type(Arch arch) { return arch_name(arch); }

// llama.cpp's converter reorders each head's rows from HF's (i, i+Dh/2)
// pairing to adjacent pairs: new row 2i+j takes old row j*Dh/2 + i.
Matrix permute_for_interleaved_rope(const Matrix& m, int heads, int head_dim) {
  Matrix out = m;
  const int half = head_dim / 2;
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < half; ++i) {
      for (int j = 0; j < 2; ++j) {
        const float* src = m.row(int64_t(h) * head_dim + j * half + i);
        std::copy(src, src + m.cols, out.row(int64_t(h) * head_dim + 2 * i + j));
      }
    }
  }
  return out;
}

}  // namespace

std::string write_hf_checkpoint(const ModelWeights& w, const std::string& dir) {
  const ModelConfig& c = w.config;
  SafetensorsWriter st;
  st.add_tensor_f32("model.embed_tokens.weight", shape_of(w.token_embd), w.token_embd.data);
  st.add_tensor_f32("model.norm.weight", {c.dim}, w.output_norm);
  if (!w.output.empty()) st.add_tensor_f32("lm_head.weight", shape_of(w.output), w.output.data);
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    st.add_tensor_f32(p + "input_layernorm.weight", {c.dim}, l.attn_norm);
    st.add_tensor_f32(p + "self_attn.q_proj.weight", shape_of(l.attn_q), l.attn_q.data);
    st.add_tensor_f32(p + "self_attn.k_proj.weight", shape_of(l.attn_k), l.attn_k.data);
    st.add_tensor_f32(p + "self_attn.v_proj.weight", shape_of(l.attn_v), l.attn_v.data);
    if (c.qkv_bias) {
      st.add_tensor_f32(p + "self_attn.q_proj.bias", {int64_t(l.attn_q_bias.size())}, l.attn_q_bias);
      st.add_tensor_f32(p + "self_attn.k_proj.bias", {int64_t(l.attn_k_bias.size())}, l.attn_k_bias);
      st.add_tensor_f32(p + "self_attn.v_proj.bias", {int64_t(l.attn_v_bias.size())}, l.attn_v_bias);
    }
    if (c.qk_norm) {
      st.add_tensor_f32(p + "self_attn.q_norm.weight", {c.head_dim},
                        std::vector<float>(l.attn_q_norm.row(0), l.attn_q_norm.row(0) + c.head_dim));
      st.add_tensor_f32(p + "self_attn.k_norm.weight", {c.head_dim},
                        std::vector<float>(l.attn_k_norm.row(0), l.attn_k_norm.row(0) + c.head_dim));
    }
    st.add_tensor_f32(p + "self_attn.o_proj.weight", shape_of(l.attn_out), l.attn_out.data);
    st.add_tensor_f32(p + "post_attention_layernorm.weight", {c.dim}, l.ffn_norm);
    st.add_tensor_f32(p + "mlp.gate_proj.weight", shape_of(l.ffn_gate), l.ffn_gate.data);
    st.add_tensor_f32(p + "mlp.up_proj.weight", shape_of(l.ffn_up), l.ffn_up.data);
    st.add_tensor_f32(p + "mlp.down_proj.weight", shape_of(l.ffn_down), l.ffn_down.data);
  }
  Status written = st.write(dir + "/model.safetensors");
  EXPECT_TRUE(written.ok()) << written.message();

  std::string rope_scaling = "null";
  if (!c.rope_freq_factors.empty()) {
    // tiny_llama_config's scaling parameters.
    rope_scaling = R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64})";
  }
  std::ofstream config(dir + "/config.json");
  config << "{\"model_type\": \"" << hf_model_type(c.arch) << "\", \"hidden_size\": " << c.dim
         << ", \"intermediate_size\": " << c.ffn_dim << ", \"num_hidden_layers\": " << c.n_layers
         << ", \"num_attention_heads\": " << c.n_heads << ", \"num_key_value_heads\": " << c.n_kv_heads
         << ", \"head_dim\": " << c.head_dim << ", \"vocab_size\": " << c.vocab_size
         << ", \"max_position_embeddings\": " << c.max_context << ", \"rms_norm_eps\": " << c.rms_eps
         << ", \"rope_theta\": " << c.rope_theta << ", \"tie_word_embeddings\": " << (c.tied_embeddings ? "true" : "false")
         << ", \"rope_scaling\": " << rope_scaling << "}\n";
  return dir;
}

std::string write_gguf_checkpoint(const ModelWeights& w, const std::string& path) {
  const ModelConfig& c = w.config;
  const std::string arch = arch_name(c.arch);
  const bool interleave = c.arch == Arch::Llama;
  GgufWriter g;
  g.add_string("general.architecture", arch);
  g.add_uint32(arch + ".block_count", c.n_layers);
  g.add_uint32(arch + ".context_length", c.max_context);
  g.add_uint32(arch + ".embedding_length", c.dim);
  g.add_uint32(arch + ".feed_forward_length", c.ffn_dim);
  g.add_uint32(arch + ".attention.head_count", c.n_heads);
  g.add_uint32(arch + ".attention.head_count_kv", c.n_kv_heads);
  g.add_uint32(arch + ".attention.key_length", c.head_dim);
  g.add_uint32(arch + ".attention.value_length", c.head_dim);
  g.add_uint32(arch + ".rope.dimension_count", c.head_dim);
  g.add_float(arch + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  g.add_float(arch + ".rope.freq_base", c.rope_theta);

  // Byte-level vocab: the 256 GPT-2 byte symbols, then filler tokens up to V.
  std::vector<std::string> tokens;
  int next_extra = 0;
  for (int b = 0; b < 256; ++b) {
    // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 + n.
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = printable ? b : 256 + next_extra++;
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    }
    tokens.push_back(s);
  }
  for (int i = 256; i < c.vocab_size; ++i) tokens.push_back("<extra_" + std::to_string(i) + ">");
  std::vector<int32_t> types(tokens.size(), 1);
  for (int i = 256; i < c.vocab_size; ++i) types[i] = 3;  // control
  g.add_string("tokenizer.ggml.model", "gpt2");
  g.add_string("tokenizer.ggml.pre", "gpt-2");  // llama.cpp's name for the GPT-2 regex
  g.add_string_array("tokenizer.ggml.tokens", tokens);
  g.add_int_array("tokenizer.ggml.token_type", types);
  g.add_string_array("tokenizer.ggml.merges", {});
  g.add_uint32("tokenizer.ggml.bos_token_id", 256);
  g.add_uint32("tokenizer.ggml.eos_token_id", 257);

  g.add_tensor_f32("token_embd.weight", shape_of(w.token_embd), w.token_embd.data);
  g.add_tensor_f32("output_norm.weight", {c.dim}, w.output_norm);
  if (!w.output.empty()) g.add_tensor_f32("output.weight", shape_of(w.output), w.output.data);
  if (!c.rope_freq_factors.empty()) g.add_tensor_f32("rope_freqs.weight", {c.head_dim / 2}, c.rope_freq_factors);
  for (int i = 0; i < c.n_layers; ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    const Matrix q = interleave ? permute_for_interleaved_rope(l.attn_q, c.n_heads, c.head_dim) : l.attn_q;
    const Matrix k = interleave ? permute_for_interleaved_rope(l.attn_k, c.n_kv_heads, c.head_dim) : l.attn_k;
    g.add_tensor_f32(p + "attn_norm.weight", {c.dim}, l.attn_norm);
    g.add_tensor_f32(p + "attn_q.weight", shape_of(q), q.data);
    g.add_tensor_f32(p + "attn_k.weight", shape_of(k), k.data);
    g.add_tensor_f32(p + "attn_v.weight", shape_of(l.attn_v), l.attn_v.data);
    if (c.qkv_bias) {
      g.add_tensor_f32(p + "attn_q.bias", {int64_t(l.attn_q_bias.size())}, l.attn_q_bias);
      g.add_tensor_f32(p + "attn_k.bias", {int64_t(l.attn_k_bias.size())}, l.attn_k_bias);
      g.add_tensor_f32(p + "attn_v.bias", {int64_t(l.attn_v_bias.size())}, l.attn_v_bias);
    }
    if (c.qk_norm) {
      g.add_tensor_f32(p + "attn_q_norm.weight", {c.head_dim},
                       std::vector<float>(l.attn_q_norm.row(0), l.attn_q_norm.row(0) + c.head_dim));
      g.add_tensor_f32(p + "attn_k_norm.weight", {c.head_dim},
                       std::vector<float>(l.attn_k_norm.row(0), l.attn_k_norm.row(0) + c.head_dim));
    }
    g.add_tensor_f32(p + "attn_output.weight", shape_of(l.attn_out), l.attn_out.data);
    g.add_tensor_f32(p + "ffn_norm.weight", {c.dim}, l.ffn_norm);
    g.add_tensor_f32(p + "ffn_gate.weight", shape_of(l.ffn_gate), l.ffn_gate.data);
    g.add_tensor_f32(p + "ffn_up.weight", shape_of(l.ffn_up), l.ffn_up.data);
    g.add_tensor_f32(p + "ffn_down.weight", shape_of(l.ffn_down), l.ffn_down.data);
  }
  Status written = g.write(path);
  EXPECT_TRUE(written.ok()) << written.message();
  return path;
}

ModelWeights rounded_to_bf16(ModelWeights w) {
  auto round = [](Matrix& m) {
    for (float& x : m.data) x = bf16_to_f32(f32_to_bf16(x));
    m.packed = {};
  };
  round(w.token_embd);
  round(w.output);
  for (LayerWeights& l : w.layers) {
    for (Matrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_out, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) round(*m);
  }
  return w;
}

Diff max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  Diff d;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double e = std::fabs(double(a[i]) - b[i]);
    if (!(e <= d.max_abs)) {  // NaN counts as the largest difference
      d.max_abs = std::isnan(e) ? INFINITY : e;
      d.argmax_index = int64_t(i);
    }
  }
  return d;
}

namespace {

// Random Q4_1 rows for every row of m, and its float32 rows set to their decoded values.
void give_q4_1_rows(Matrix& m, std::mt19937& rng) {
  ASSERT_EQ(m.cols % 32, 0);
  const int64_t blocks = m.cols / 32;
  m.packed = PackedRows{DType::Q4_1, blocks * 20, std::vector<uint8_t>(m.rows * blocks * 20)};
  for (int64_t b = 0; b < m.rows * blocks; ++b) {
    uint8_t* block = m.packed.bytes.data() + b * 20;
    // fp16 bit patterns drawn directly (no F16C: duet_cuda_tests builds this file without -mf16c):
    // scale d in [2^-9, 2^-6), min in (-2^-4, -2^-7].
    const uint16_t d = static_cast<uint16_t>(((6 + rng() % 3) << 10) | (rng() & 0x3ff));
    const uint16_t min = static_cast<uint16_t>(0x8000 | ((8 + rng() % 3) << 10) | (rng() & 0x3ff));
    std::memcpy(block, &d, 2);
    std::memcpy(block + 2, &min, 2);
    for (int j = 4; j < 20; ++j) block[j] = static_cast<uint8_t>(rng());
  }
  for (int64_t r = 0; r < m.rows; ++r) dequantize_row(DType::Q4_1, m.packed.bytes.data() + r * m.packed.row_bytes, m.row(r), m.cols);
}

}  // namespace

ModelWeights with_q4_1_rows(ModelWeights w, bool output_too) {
  std::mt19937 rng(99);
  if (output_too) give_q4_1_rows(w.output.empty() ? w.token_embd : w.output, rng);
  for (LayerWeights& l : w.layers) {
    for (Matrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_out, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) give_q4_1_rows(*m, rng);
    l.attn_packed_gains = Matrix{1, w.config.dim, l.attn_norm, {}};
    l.ffn_packed_gains = Matrix{1, w.config.dim, l.ffn_norm, {}};
  }
  return w;
}

}  // namespace duet::test
