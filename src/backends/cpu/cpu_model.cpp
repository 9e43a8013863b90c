#include "backends/cpu/cpu_model.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>

#include "kernels/ops.h"

namespace duet {
namespace {

// Up to this many tokens a step is memory-bound: stream the encoded rows
// (matmul_packed). Above it, float32 sgemm is compute-efficient.
constexpr int kPackedMaxTokens = 8;

// Prefill picks the path by T; a batched decode step always streams the encoded rows.
enum class MatmulPath { kByTokens, kPacked };

// `tiles`: the matrix's int8 tiles (kInt8 arithmetic); the int8 kernel beats sgemm at every T, so then prefill
// reads the encoded rows too.
bool use_packed(const Matrix& w, const cpu::Q8Tiles* tiles, int T, MatmulPath path = MatmulPath::kByTokens) {
  if (w.packed.empty()) return false;
  if (tiles != nullptr) return true;
  return path == MatmulPath::kPacked || T <= kPackedMaxTokens;
}

void matmul_encoded(const cpu::Q8Tiles* tiles, const float* x, int G, const PackedRows& w, const float* bias,
                    float* y, int T, int N, int K) {
  if (tiles != nullptr) return cpu::matmul_q8(x, G, *tiles, bias, y, T);
  cpu::matmul_packed(x, G, w, bias, y, T, N, K);
}

const float* bias_or_null(const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); }

// Inputs for packed rows: r(x) * gains[g] for every row group g -> [G, T, D].
std::vector<float> grouped_inputs(const float* x, const Matrix& gains, int T, int D, float eps) {
  std::vector<float> normed(static_cast<size_t>(T) * D);
  cpu::rms_norm(x, nullptr, normed.data(), T, D, eps);
  std::vector<float> out(static_cast<size_t>(gains.rows) * T * D);
  for (int64_t g = 0; g < gains.rows; ++g) {
    for (int t = 0; t < T; ++t) {
      float* dst = out.data() + (g * T + t) * D;
      const float* src = normed.data() + static_cast<int64_t>(t) * D;
      for (int d = 0; d < D; ++d) dst[d] = src[d] * gains.row(g)[d];
    }
  }
  return out;
}

// y = (normed input) W^T (+ bias): float32 rows read `normed` (gains folded
// or applied by the norm); encoded rows read the per-group `grouped` inputs.
void project(const cpu::Q8Tiles* tiles, const Matrix& w, const std::vector<float>& bias, const float* normed,
             const std::vector<float>& grouped, int groups, float* y, int T) {
  if (!w.packed.empty() && !grouped.empty()) {
    matmul_encoded(tiles, grouped.data(), groups, w.packed, bias_or_null(bias), y, T, static_cast<int>(w.rows),
                   static_cast<int>(w.cols));
  } else {
    cpu::matmul(normed, w.data.data(), bias_or_null(bias), y, T, static_cast<int>(w.rows), static_cast<int>(w.cols));
  }
}

// Projections of one input x [T, D] after an RMSNorm with gain `norm` (Q, K, V; gate, up): under int8 arithmetic
// one matmul_q8_shared call (one quantization of the input, one parallel region), else project() each. Encoded
// rows read `grouped` (gains applied there); x normed with `norm` is computed only if float32 rows read it.
struct Projection {
  const Matrix& w;
  const cpu::Q8Tiles* tiles;  // null: no int8 tiles
  const std::vector<float>& bias;
  float* y;
};

void project_all(std::initializer_list<Projection> outputs, const float* x, const std::vector<float>& norm,
                 const ModelConfig& c, const std::vector<float>& grouped, int groups, int T) {
  bool shared = !grouped.empty(), needs_normed = grouped.empty();
  for (const Projection& o : outputs) {
    shared = shared && o.tiles != nullptr && !o.w.packed.empty();
    needs_normed = needs_normed || o.w.packed.empty();
  }
  if (!shared) {
    std::vector<float> normed(needs_normed ? static_cast<size_t>(T) * c.dim : 0);
    if (needs_normed) cpu::rms_norm(x, norm.data(), normed.data(), T, c.dim, c.rms_eps);
    for (const Projection& o : outputs) project(o.tiles, o.w, o.bias, normed.data(), grouped, groups, o.y, T);
    return;
  }
  std::vector<cpu::Q8Projection> int8;
  for (const Projection& o : outputs) int8.push_back({o.tiles, bias_or_null(o.bias), o.y});
  cpu::matmul_q8_shared(grouped.data(), groups, int8.data(), static_cast<int>(int8.size()), T);
}

// y = x W^T for projections that read no norm (attention output, FFN down, logits).
void project_plain(const cpu::Q8Tiles* tiles, const Matrix& w, const float* x, float* y, int T,
                   MatmulPath path = MatmulPath::kByTokens) {
  if (use_packed(w, tiles, T, path)) {
    matmul_encoded(tiles, x, 1, w.packed, nullptr, y, T, static_cast<int>(w.rows), static_cast<int>(w.cols));
  } else {
    cpu::matmul(x, w.data.data(), nullptr, y, T, static_cast<int>(w.rows), static_cast<int>(w.cols));
  }
}

}  // namespace

CpuModel::CpuModel(const ModelWeights& weights, int max_positions, Communicator* comm, CpuArithmetic arithmetic)
    : weights_(weights), max_positions_(max_positions), comm_(comm), arithmetic_(arithmetic) {
  const size_t n = static_cast<size_t>(max_positions) * (weights.config.head_dim / 2);
  rope_cos_.resize(n);
  rope_sin_.resize(n);
  cpu::rope_table_fill(weights.config, max_positions, rope_cos_.data(), rope_sin_.data());
  if (arithmetic != CpuArithmetic::kInt8) return;
  std::vector<const Matrix*> matrices = {&weights.output_matrix()};
  for (const LayerWeights& l : weights.layers) {
    for (const Matrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_out, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) {
      matrices.push_back(m);
    }
  }
  for (const Matrix* m : matrices) {
    const int N = static_cast<int>(m->rows), K = static_cast<int>(m->cols);
    if (!m->packed.empty() && cpu::matmul_q8_supported(m->packed, K)) {
      q8_tiles_[&m->packed] = cpu::q8_tiles(m->packed, N, K);
    }
  }
}

const cpu::Q8Tiles* CpuModel::tiles(const Matrix& w) const {
  const auto it = q8_tiles_.find(&w.packed);
  return it == q8_tiles_.end() ? nullptr : &it->second;
}

void CpuModel::embed(const int32_t* tokens, int T, float* x) const {
  const int D = config().dim;
  for (int t = 0; t < T; ++t) std::memcpy(x + static_cast<int64_t>(t) * D, weights_.token_embd.row(tokens[t]), D * sizeof(float));
}

void CpuModel::attention_block(const LayerWeights& layer, LayerCache& cache, int pos0, const float* x, int T,
                               float* out) const {
  const ModelConfig& c = config();
  const int D = c.dim, Dh = c.head_dim, H = layer.n_heads, Hkv = layer.n_kv_heads;
  const int64_t kv_row = static_cast<int64_t>(Hkv) * Dh;
  std::vector<float> q(static_cast<size_t>(T) * H * Dh), attn(static_cast<size_t>(T) * H * Dh);

  const std::vector<float> grouped = use_packed(layer.attn_q, tiles(layer.attn_q), T)
                                         ? grouped_inputs(x, layer.attn_packed_gains, T, D, c.rms_eps)
                                         : std::vector<float>();
  const int groups = static_cast<int>(layer.attn_packed_gains.rows);

  // K and V go straight into the cache rows of positions [pos0, pos0+T).
  float* k = cache.k.data() + pos0 * kv_row;
  float* v = cache.v.data() + pos0 * kv_row;
  project_all({{layer.attn_q, tiles(layer.attn_q), layer.attn_q_bias, q.data()},
               {layer.attn_k, tiles(layer.attn_k), layer.attn_k_bias, k},
               {layer.attn_v, tiles(layer.attn_v), layer.attn_v_bias, v}},
              x, layer.attn_norm, c, grouped, groups, T);
  if (!layer.attn_q_norm.empty()) {
    cpu::rms_norm_heads(q.data(), layer.attn_q_norm.data.data(), T, H, Dh, c.rms_eps);
    cpu::rms_norm_heads(k, layer.attn_k_norm.data.data(), T, Hkv, Dh, c.rms_eps);
  }
  const cpu::RopeTable table{Dh, max_positions_, c.rope_style, rope_cos_.data(),
                             rope_sin_.data()};
  cpu::rope(q.data(), T, H, pos0, table);
  cpu::rope(k, T, Hkv, pos0, table);
  cpu::attention_causal(q.data(), cache.k.data(), cache.v.data(), attn.data(), T, pos0, H, Hkv, Dh);
  project_plain(tiles(layer.attn_out), layer.attn_out, attn.data(), out, T);
}

void CpuModel::ffn_block(const LayerWeights& layer, const float* x, int T, float* out) const {
  const ModelConfig& c = config();
  const int D = c.dim, F = layer.ffn_dim;
  std::vector<float> gate(static_cast<size_t>(T) * F), up(static_cast<size_t>(T) * F);
  const std::vector<float> grouped = use_packed(layer.ffn_gate, tiles(layer.ffn_gate), T)
                                         ? grouped_inputs(x, layer.ffn_packed_gains, T, D, c.rms_eps)
                                         : std::vector<float>();
  const int groups = static_cast<int>(layer.ffn_packed_gains.rows);
  const std::vector<float> no_bias;
  project_all({{layer.ffn_gate, tiles(layer.ffn_gate), no_bias, gate.data()},
               {layer.ffn_up, tiles(layer.ffn_up), no_bias, up.data()}},
              x, layer.ffn_norm, c, grouped, groups, T);
  cpu::silu_mul(gate.data(), up.data(), gate.data(), static_cast<int64_t>(T) * F);
  project_plain(tiles(layer.ffn_down), layer.ffn_down, gate.data(), out, T);
}

void CpuModel::output_logits(const float* x, int T, float* logits) const {
  const ModelConfig& c = config();
  std::vector<float> xn(static_cast<size_t>(T) * c.dim);
  cpu::rms_norm(x, weights_.output_norm.data(), xn.data(), T, c.dim, c.rms_eps);
  project_plain(tiles(weights_.output_matrix()), weights_.output_matrix(), xn.data(), logits, T);
}

Status CpuModel::decode_batch(const int32_t* tokens, int B, KvCache* const* caches, std::vector<float>& logits) const {
  const ModelConfig& c = config();
  if (B <= 0) return make_error("decode_batch: no sequences to run");
  for (int b = 0; b < B; ++b) {
    if (caches[b]->length + 1 > std::min(caches[b]->capacity, max_positions_)) {
      return make_error("sequence ", b, " is full (", caches[b]->length, " positions); raise --ctx");
    }
    if (tokens[b] < 0 || tokens[b] >= c.vocab_size) {
      return make_error("token id ", tokens[b], " is outside the vocabulary [0, ", c.vocab_size, ")");
    }
  }
  const int D = c.dim, Dh = c.head_dim;
  const int64_t n = static_cast<int64_t>(B) * D;
  std::vector<float> x(n), block_out(n);
  embed(tokens, B, x.data());
  const cpu::RopeTable table{Dh, max_positions_, c.rope_style, rope_cos_.data(), rope_sin_.data()};
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& layer = weights_.layers[l];
    const int H = layer.n_heads, Hkv = layer.n_kv_heads, F = layer.ffn_dim;
    const int64_t q_row = static_cast<int64_t>(H) * Dh, kv_row = static_cast<int64_t>(Hkv) * Dh;

    // Attention: the B rows share every projection; RoPE, the cache write and attention are per row.
    std::vector<float> q(B * q_row), k(B * kv_row), v(B * kv_row), attn(B * q_row);
    std::vector<float> grouped = use_packed(layer.attn_q, tiles(layer.attn_q), B, MatmulPath::kPacked)
                                     ? grouped_inputs(x.data(), layer.attn_packed_gains, B, D, c.rms_eps)
                                     : std::vector<float>();
    int groups = static_cast<int>(layer.attn_packed_gains.rows);
    project_all({{layer.attn_q, tiles(layer.attn_q), layer.attn_q_bias, q.data()},
                 {layer.attn_k, tiles(layer.attn_k), layer.attn_k_bias, k.data()},
                 {layer.attn_v, tiles(layer.attn_v), layer.attn_v_bias, v.data()}},
                x.data(), layer.attn_norm, c, grouped, groups, B);
    if (!layer.attn_q_norm.empty()) {
      cpu::rms_norm_heads(q.data(), layer.attn_q_norm.data.data(), B, H, Dh, c.rms_eps);
      cpu::rms_norm_heads(k.data(), layer.attn_k_norm.data.data(), B, Hkv, Dh, c.rms_eps);
    }
    for (int b = 0; b < B; ++b) {
      LayerCache& cache = caches[b]->layers[l];
      const int pos = caches[b]->length;
      cpu::rope(q.data() + b * q_row, 1, H, pos, table);
      cpu::rope(k.data() + b * kv_row, 1, Hkv, pos, table);
      std::memcpy(cache.k.data() + pos * kv_row, k.data() + b * kv_row, kv_row * sizeof(float));
      std::memcpy(cache.v.data() + pos * kv_row, v.data() + b * kv_row, kv_row * sizeof(float));
      cpu::attention_causal(q.data() + b * q_row, cache.k.data(), cache.v.data(), attn.data() + b * q_row, 1, pos, H,
                            Hkv, Dh);
    }
    project_plain(tiles(layer.attn_out), layer.attn_out, attn.data(), block_out.data(), B, MatmulPath::kPacked);
    if (comm_) DUET_TRY(comm_->all_reduce_sum(block_out.data(), n));
    cpu::add_inplace(x.data(), block_out.data(), n);

    // FFN over the B rows.
    std::vector<float> gate(static_cast<size_t>(B) * F), up(static_cast<size_t>(B) * F);
    grouped = use_packed(layer.ffn_gate, tiles(layer.ffn_gate), B, MatmulPath::kPacked)
                  ? grouped_inputs(x.data(), layer.ffn_packed_gains, B, D, c.rms_eps)
                  : std::vector<float>();
    groups = static_cast<int>(layer.ffn_packed_gains.rows);
    const std::vector<float> no_bias;
    project_all({{layer.ffn_gate, tiles(layer.ffn_gate), no_bias, gate.data()},
                 {layer.ffn_up, tiles(layer.ffn_up), no_bias, up.data()}},
                x.data(), layer.ffn_norm, c, grouped, groups, B);
    cpu::silu_mul(gate.data(), up.data(), gate.data(), static_cast<int64_t>(B) * F);
    project_plain(tiles(layer.ffn_down), layer.ffn_down, gate.data(), block_out.data(), B, MatmulPath::kPacked);
    if (comm_) DUET_TRY(comm_->all_reduce_sum(block_out.data(), n));
    cpu::add_inplace(x.data(), block_out.data(), n);
  }
  for (int b = 0; b < B; ++b) caches[b]->length += 1;
  if (comm_ != nullptr && comm_->rank() != 0) {
    logits.clear();
    return ok_status();
  }
  logits.resize(static_cast<size_t>(B) * c.vocab_size);
  std::vector<float> xn(n);
  cpu::rms_norm(x.data(), weights_.output_norm.data(), xn.data(), B, D, c.rms_eps);
  project_plain(tiles(weights_.output_matrix()), weights_.output_matrix(), xn.data(), logits.data(), B,
                MatmulPath::kPacked);
  return ok_status();
}

Status CpuModel::forward(const int32_t* tokens, int T, KvCache& cache, LogitsMode mode,
                         std::vector<float>& logits) const {
  const int rows = mode == LogitsMode::All ? T : 1;
  return forward_rows(tokens, T, cache, T - rows, rows, logits);
}

Status CpuModel::forward_rows(const int32_t* tokens, int T, KvCache& cache, int first_row, int rows,
                              std::vector<float>& logits) const {
  const ModelConfig& c = config();
  if (T <= 0) return make_error("forward: no tokens to run");
  if (first_row < 0 || rows < 0 || first_row + rows > T) {
    return make_error("forward: logits rows [", first_row, ", ", first_row + rows, ") are outside the ", T, " tokens");
  }
  if (cache.length + T > cache.capacity || cache.length + T > max_positions_) {
    return make_error(cache.length + T, " tokens do not fit the context of ", std::min(cache.capacity, max_positions_),
                      " positions (", cache.length, " already used); raise --ctx or shorten the prompt");
  }
  for (int t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size) {
      return make_error("token id ", tokens[t], " is outside the vocabulary [0, ", c.vocab_size, ")");
    }
  }
  const int64_t n = static_cast<int64_t>(T) * c.dim;
  const bool rank0 = comm_ == nullptr || comm_->rank() == 0;
  std::vector<float> x(n), block_out(n);
  embed(tokens, T, x.data());
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& layer = weights_.layers[l];
    attention_block(layer, cache.layers[l], cache.length, x.data(), T, block_out.data());
    if (comm_) DUET_TRY(comm_->all_reduce_sum(block_out.data(), n));
    cpu::add_inplace(x.data(), block_out.data(), n);
    ffn_block(layer, x.data(), T, block_out.data());
    if (comm_) DUET_TRY(comm_->all_reduce_sum(block_out.data(), n));
    cpu::add_inplace(x.data(), block_out.data(), n);
  }
  cache.length += T;
  if (!rank0) {
    logits.clear();
    return ok_status();
  }
  logits.resize(static_cast<size_t>(rows) * c.vocab_size);
  if (rows > 0) output_logits(x.data() + first_row * static_cast<int64_t>(c.dim), rows, logits.data());
  return ok_status();
}

}  // namespace duet
