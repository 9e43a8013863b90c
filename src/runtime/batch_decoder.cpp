#include "runtime/batch_decoder.h"

namespace duet {

Status BatchDecoder::decode_top(const int32_t* slot_ids, const int32_t* tokens, int B, const int32_t* top,
                                DecodeSelection& out) {
  DUET_TRY(decode(slot_ids, tokens, B, out.rows));
  const size_t candidates = static_cast<size_t>(B) * kMaxTopCandidates;
  if (out.values.size() < candidates) out.values.resize(candidates);
  if (out.ids.size() < candidates) out.ids.resize(candidates);
  const int V = vocab_size();
  for (int b = 0; b < B; ++b) {
    if (top[b] <= 0) continue;
    const size_t at = static_cast<size_t>(b) * kMaxTopCandidates;
    select_top(out.rows.data() + static_cast<size_t>(b) * V, V, top[b], out.values.data() + at, out.ids.data() + at);
  }
  return ok_status();
}

}  // namespace duet
