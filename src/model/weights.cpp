#include "model/weights.h"

namespace duet {

int64_t ModelWeights::parameter_count() const {
  int64_t n = static_cast<int64_t>(token_embd.data.size() + output_norm.size() + output.data.size());
  for (const LayerWeights& l : layers) {
    n += l.attn_norm.size() + l.attn_q.data.size() + l.attn_k.data.size() + l.attn_v.data.size();
    n += l.attn_q_bias.size() + l.attn_k_bias.size() + l.attn_v_bias.size();
    n += l.attn_q_norm.data.size() + l.attn_k_norm.data.size() + l.attn_out.data.size();
    n += l.ffn_norm.size() + l.ffn_gate.data.size() + l.ffn_up.data.size() + l.ffn_down.data.size();
  }
  return n;
}

}  // namespace duet
