// validate_config: the shape rules every loader applies before allocating.
#include <cmath>

#include "model/loader.h"

namespace duet {

Status validate_config(const ModelConfig& c) {
  // Generous caps: far above any real model, low enough that a corrupt header
  // cannot make duet allocate terabytes.
  constexpr int kMaxDim = 1 << 16, kMaxHeads = 1024, kMaxVocab = 1 << 22;
  if (c.n_layers <= 0 || c.n_layers > kMaxLayers) return make_error("bad model config: layer count ", c.n_layers, " (expected 1..", kMaxLayers, ")");
  if (c.dim <= 0 || c.dim > kMaxDim) return make_error("bad model config: model dim ", c.dim, " (expected 1..", kMaxDim, ")");
  if (c.n_heads <= 0 || c.n_heads > kMaxHeads) return make_error("bad model config: head count ", c.n_heads);
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0) {
    return make_error("bad model config: ", c.n_heads, " query heads are not a multiple of ", c.n_kv_heads, " KV heads");
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 1024) return make_error("bad model config: head dim ", c.head_dim, " (expected an even number up to 1024)");
  if (c.ffn_dim <= 0 || c.ffn_dim > 8 * kMaxDim) return make_error("bad model config: FFN dim ", c.ffn_dim);
  if (c.vocab_size <= 0 || c.vocab_size > kMaxVocab) return make_error("bad model config: vocab size ", c.vocab_size);
  if (c.max_context <= 0) return make_error("bad model config: context length ", c.max_context);
  if (!(std::isfinite(c.rms_eps) && c.rms_eps > 0) || !(std::isfinite(c.rope_theta) && c.rope_theta > 0)) return make_error("bad model config: rms eps ", c.rms_eps, ", rope theta ", c.rope_theta);
  if (!c.rope_freq_factors.empty() && static_cast<int>(c.rope_freq_factors.size()) != c.head_dim / 2) {
    return make_error("bad model config: ", c.rope_freq_factors.size(), " RoPE frequency factors for head dim ", c.head_dim,
                      " (expected ", c.head_dim / 2, ")");
  }
  for (float f : c.rope_freq_factors) {
    if (!(std::isfinite(f) && f > 0)) return make_error("bad model config: RoPE frequency factor ", f, " (expected a positive number)");
  }
  return ok_status();
}

}  // namespace duet
