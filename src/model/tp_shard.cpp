#include "model/tp_shard.h"

#include <algorithm>

#include "core/check.h"

namespace duet {
namespace {

// A contiguous block of heads (or FFN rows): [begin, end).
struct Span {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// Rows [rows.begin, rows.end) of w, float32 and encoded alike.
Matrix slice_rows(const Matrix& w, Span rows) {
  Matrix out{rows.size(), w.cols, {}, {}};
  out.data.assign(w.data.begin() + rows.begin * w.cols, w.data.begin() + rows.end * w.cols);
  if (!w.packed.empty()) {
    out.packed = PackedRows{w.packed.type, w.packed.row_bytes, {}};
    out.packed.bytes.assign(w.packed.bytes.begin() + rows.begin * w.packed.row_bytes,
                            w.packed.bytes.begin() + rows.end * w.packed.row_bytes);
  }
  return out;
}

std::vector<float> slice(const std::vector<float>& v, Span span) {
  if (v.empty()) return {};
  return std::vector<float>(v.begin() + span.begin, v.begin() + span.end);
}

// Columns [cols.begin, cols.end) of every row. Encoded rows are sliced at block
// boundaries (blocks are self-contained); when the span does not fall on them
// the shard keeps only float32 rows.
Matrix slice_cols(const Matrix& w, Span cols) {
  Matrix out{w.rows, cols.size(), std::vector<float>(static_cast<size_t>(w.rows * cols.size())), {}};
  for (int64_t r = 0; r < w.rows; ++r) std::copy(w.row(r) + cols.begin, w.row(r) + cols.end, out.row(r));
  if (w.packed.empty()) return out;
  const int64_t block = dtype_block_elems(w.packed.type), block_bytes = dtype_block_bytes(w.packed.type);
  if (cols.begin % block != 0 || cols.size() % block != 0) return out;
  const int64_t offset = cols.begin / block * block_bytes, bytes = cols.size() / block * block_bytes;
  out.packed = PackedRows{w.packed.type, bytes, {}};
  out.packed.bytes.reserve(static_cast<size_t>(w.rows * bytes));
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* row = w.packed.bytes.data() + r * w.packed.row_bytes + offset;
    out.packed.bytes.insert(out.packed.bytes.end(), row, row + bytes);
  }
  return out;
}

// The row groups of a shard: rows [rows) of a matrix of n rows in `groups`
// equal row groups (packed gains, one per LP half), cut into equal runs that
// each lie in one source group; returns the runs' source groups. The runs are
// always equal for a valid split: a half holds n/2 rows, a shard n/tp, so the
// half boundary is either a shard boundary or a shard's midpoint.
std::vector<int64_t> shard_groups(int64_t n, int64_t groups, Span rows) {
  const int64_t per_group = n / groups;
  std::vector<int64_t> sources, lengths;
  for (int64_t r = rows.begin; r < rows.end;) {
    const int64_t g = r / per_group, end = std::min(rows.end, (g + 1) * per_group);
    sources.push_back(g);
    lengths.push_back(end - r);
    r = end;
  }
  for (int64_t len : lengths) DUET_CHECK(len == lengths.front());
  return sources;
}

// The gains table of a shard's encoded rows: one row per run of rows from one
// LP half. Q, K and V (gate and up) share a table; their shards span the same
// halves in the same proportions (KV spans are query spans / the GQA group).
Matrix shard_packed_gains(const Matrix& gains, const std::vector<const Matrix*>& full, const std::vector<Span>& spans) {
  if (gains.rows <= 1) return gains;  // one group: every row reads the same gains
  std::vector<int64_t> common;
  for (size_t i = 0; i < full.size(); ++i) {
    if (full[i]->packed.empty()) continue;
    const std::vector<int64_t> groups = shard_groups(full[i]->rows, gains.rows, spans[i]);
    DUET_CHECK(common.empty() || common == groups);
    common = groups;
  }
  if (common.empty()) return gains;  // no encoded rows: the gains are never read
  Matrix out{static_cast<int64_t>(common.size()), gains.cols, {}, {}};
  for (int64_t g : common) out.data.insert(out.data.end(), gains.row(g), gains.row(g) + gains.cols);
  return out;
}

LayerWeights shard_layer(const LayerWeights& l, int head_dim, int rank, int tp) {
  const int64_t Dh = head_dim, H = l.n_heads, Hkv = l.n_kv_heads, F = l.ffn_dim;
  const Span heads{H * rank / tp, H * (rank + 1) / tp};
  // KV heads of this rank's query heads: a block of Hkv/tp, or one replicated head.
  const int64_t group = H / Hkv;
  const Span kv{heads.begin / group, (heads.end - 1) / group + 1};
  const Span q_rows{heads.begin * Dh, heads.end * Dh}, kv_rows{kv.begin * Dh, kv.end * Dh};
  const Span ffn{F * rank / tp, F * (rank + 1) / tp};

  LayerWeights s;
  s.n_heads = static_cast<int>(heads.size());
  s.n_kv_heads = static_cast<int>(kv.size());
  s.ffn_dim = static_cast<int>(ffn.size());
  s.source_layers = l.source_layers;
  s.attn_norm = l.attn_norm;
  s.attn_q = slice_rows(l.attn_q, q_rows);
  s.attn_k = slice_rows(l.attn_k, kv_rows);
  s.attn_v = slice_rows(l.attn_v, kv_rows);
  s.attn_q_bias = slice(l.attn_q_bias, q_rows);
  s.attn_k_bias = slice(l.attn_k_bias, kv_rows);
  s.attn_v_bias = slice(l.attn_v_bias, kv_rows);
  if (!l.attn_q_norm.empty()) {
    s.attn_q_norm = slice_rows(l.attn_q_norm, heads);
    s.attn_k_norm = slice_rows(l.attn_k_norm, kv);
  }
  s.attn_out = slice_cols(l.attn_out, q_rows);
  s.attn_packed_gains = shard_packed_gains(l.attn_packed_gains, {&l.attn_q, &l.attn_k, &l.attn_v}, {q_rows, kv_rows, kv_rows});

  s.ffn_norm = l.ffn_norm;
  s.ffn_gate = slice_rows(l.ffn_gate, ffn);
  s.ffn_up = slice_rows(l.ffn_up, ffn);
  s.ffn_down = slice_cols(l.ffn_down, ffn);
  s.ffn_packed_gains = shard_packed_gains(l.ffn_packed_gains, {&l.ffn_gate, &l.ffn_up}, {ffn, ffn});
  return s;
}

}  // namespace

Status check_tensor_parallel(const ModelWeights& weights, int tp) {
  if (tp < 1) return make_error("--tp must be at least 1 (got ", tp, ")");
  for (int i = 0; i < weights.depth(); ++i) {
    const LayerWeights& l = weights.layers[i];
    if (l.n_heads % tp != 0) {
      return make_error("--tp ", tp, " does not divide the ", l.n_heads, " query heads of layer ", i,
                        "; use a --tp that divides every layer's heads");
    }
    if (l.n_kv_heads % tp != 0 && tp % l.n_kv_heads != 0) {
      return make_error("--tp ", tp, " and the ", l.n_kv_heads, " KV heads of layer ", i,
                        " do not divide one another; KV heads are split or replicated, not both");
    }
    if (l.ffn_dim % tp != 0) {
      return make_error("--tp ", tp, " does not divide the FFN width ", l.ffn_dim, " of layer ", i);
    }
  }
  return ok_status();
}

Result<ModelConfig> tp_shard_config(const ModelConfig& config, int tp) {
  ModelWeights shape;
  shape.config = config;
  LayerWeights layer;
  layer.n_heads = config.n_heads;
  layer.n_kv_heads = config.n_kv_heads;
  layer.ffn_dim = config.ffn_dim;
  shape.layers.push_back(layer);
  DUET_TRY(check_tensor_parallel(shape, tp));
  ModelConfig c = config;
  c.n_heads /= tp;
  c.n_kv_heads = config.n_kv_heads % tp == 0 ? config.n_kv_heads / tp : 1;
  c.ffn_dim /= tp;
  return c;
}

Result<ModelWeights> shard_weights(const ModelWeights& weights, int rank, int tp) {
  DUET_TRY(check_tensor_parallel(weights, tp));
  DUET_CHECK(rank >= 0 && rank < tp);
  ModelWeights shard;
  // The shard's own widths, so that size-driven choices (CUDA decode-attention chunking) see what this
  // rank runs; the layers carry the widths the forward pass uses.
  DUET_ASSIGN_OR_RETURN(shard.config, tp_shard_config(weights.config, tp));
  shard.token_embd = weights.token_embd;
  shard.output_norm = weights.output_norm;
  shard.output = weights.output;
  for (const LayerWeights& l : weights.layers) shard.layers.push_back(shard_layer(l, weights.config.head_dim, rank, tp));
  return shard;
}

}  // namespace duet
