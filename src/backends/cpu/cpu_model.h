// CpuModel: the float32 reference forward pass of a Llama-family decoder
// (layers of any width, so LP wide layers run unchanged):
//   h   = x + Attn(norm1(x))
//   out = h + MLP(norm2(h))
// Under tensor parallelism (model/tp_shard.h) each rank runs this forward on
// its shard, with the collectives of `comm`: the sub-blocks' partial outputs
// are all-reduced before they join the residual stream (two all-reduces per
// layer), and rank 0 computes the logits.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/result.h"
#include "kernels/ops.h"
#include "model/weights.h"
#include "parallel/communicator.h"
#include "runtime/kv_cache.h"

namespace duet {

enum class LogitsMode { Last, All };

// How weights kept in their block encoding (PackedRows) are multiplied.
// kFloat32, the reference: float32 activations against the exactly decoded
// weights (fused dot products for T <= 8 tokens, sgemm on the float32 rows
// above). kInt8: every T goes through cpu::matmul_q8, activations rounded to
// int8 per 32-block and integer dot products, as llama.cpp computes, on a
// tiled copy of each encoded matrix made when the model is built; logits
// move by ~1e-1 against kFloat32 (tests/smollm2_logits_test.cpp states the bound).
// Float32 checkpoints and encodings without an int8 kernel run kFloat32 either way.
enum class CpuArithmetic { kFloat32, kInt8 };

class CpuModel {
 public:
  // `weights` (and `comm`) must outlive the model. Positions up to `max_positions`
  // can be run. With `comm`, `weights` is that rank's shard.
  CpuModel(const ModelWeights& weights, int max_positions, Communicator* comm = nullptr,
           CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

  const ModelWeights& weights() const { return weights_; }
  const ModelConfig& config() const { return weights_.config; }
  int max_positions() const { return max_positions_; }
  CpuArithmetic arithmetic() const { return arithmetic_; }
  KvCache new_cache(int capacity) const { return KvCache::for_model(weights_, capacity); }

  // Runs tokens[0..T) at positions cache.length.. and appends their K/V.
  // logits: [T, V] for LogitsMode::All, [1, V] (last token) for Last; left
  // empty on ranks other than 0.
  Status forward(const int32_t* tokens, int T, KvCache& cache, LogitsMode mode, std::vector<float>& logits) const;
  // forward with logits [rows, V] for token rows [first_row, first_row + rows) of the T only (scoring
  // reads the continuation's rows; the vocabulary projection is a fifth of a small model's work).
  Status forward_rows(const int32_t* tokens, int T, KvCache& cache, int first_row, int rows,
                      std::vector<float>& logits) const;

  // One token for each of B sequences: tokens[b] runs at position caches[b]->length of its own cache
  // and appends its K/V there. logits [B, V] (empty on ranks other than 0). Every projection reads the encoded rows (when the
  // checkpoint has them) for any B, so a sequence's logits do not depend on the batch it runs in.
  Status decode_batch(const int32_t* tokens, int B, KvCache* const* caches, std::vector<float>& logits) const;

  // Building blocks, public so tests can compose the unmerged LP definition.
  // x [T, D] is the layer input; out [T, D] receives the sub-block's output (not added to x).
  void attention_block(const LayerWeights& layer, LayerCache& cache, int pos0, const float* x, int T,
                       float* out) const;
  void ffn_block(const LayerWeights& layer, const float* x, int T, float* out) const;
  void embed(const int32_t* tokens, int T, float* x) const;
  // Final norm and output projection of rows x [T, D] into logits [T, V].
  void output_logits(const float* x, int T, float* logits) const;

 private:
  const ModelWeights& weights_;
  int max_positions_;
  Communicator* comm_;  // null: one device, no collectives
  CpuArithmetic arithmetic_;
  // kInt8: the tiled copy (cpu::q8_tiles) of every encoded matrix matmul_q8 supports, by its PackedRows.
  std::unordered_map<const PackedRows*, cpu::Q8Tiles> q8_tiles_;
  const cpu::Q8Tiles* tiles(const Matrix& w) const;
  std::vector<float> rope_cos_, rope_sin_;  // [max_positions, Dh/2]
};

}  // namespace duet
