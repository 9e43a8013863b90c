// Tensor-parallel sharding as a load-time rule on ModelWeights (Megatron /
// gpt-fast style; docs/tensor_parallel.md). Rank r of P holds:
//   Q/K/V, gate/up (column-parallel): a contiguous block of heads / FFN rows,
//     with their biases (qwen2) and per-head q/k norm rows (qwen3);
//   O, down (row-parallel): the matching block of input columns, so each rank's
//     output is a partial sum and one all-reduce after the attention and one
//     after the MLP complete the layer.
// KV heads fewer than ranks are replicated: rank r reads the KV head of its
// query heads. An LP wide layer (2H heads, 2F columns) splits the same way, so
// with P = 2 rank 0 holds layer i of the pair and rank 1 layer i+1.
// The embedding, final norm and LM head are replicated on every rank: each rank
// embeds the tokens itself (no collective before the first layer), and only
// rank 0 computes logits. A vocab-parallel head would split V x D (7B shape:
// 262 MB in bf16, 2% of the weights) at the price of a gather per step.
#pragma once

#include "core/result.h"
#include "model/weights.h"

namespace duet {

// Checks that every layer splits over `tp` ranks: query heads and FFN width
// divisible by tp, and KV heads either divisible by tp or dividing it.
Status check_tensor_parallel(const ModelWeights& weights, int tp);

// The shape one rank holds of a model of `config` (bench: random weights of a
// shard): H/tp query heads, Hkv/tp KV heads (1 when replicated), F/tp columns.
// LP wide layers built from it (2x each) are the wide layer's shard.
Result<ModelConfig> tp_shard_config(const ModelConfig& config, int tp);

// Rank `rank`'s shard of `weights` for `tp` ranks (check_tensor_parallel first),
// its config being tp_shard_config's. tp = 1 returns an exact copy.
Result<ModelWeights> shard_weights(const ModelWeights& weights, int rank, int tp);

}  // namespace duet
