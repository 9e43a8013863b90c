#include "runtime/batch_decoder.h"

namespace duet {

void DecodeSelection::fit(int B, int V) {
  const size_t candidates = static_cast<size_t>(B) * kMaxTopCandidates, row_floats = static_cast<size_t>(B) * V;
  if (values.size() < candidates) values.resize(candidates);
  if (ids.size() < candidates) ids.resize(candidates);
  if (rows.size() < row_floats) rows.resize(row_floats);
}

Status BatchDecoder::decode_top(const int32_t* slot_ids, const int32_t* tokens, int B, const int32_t* top,
                                DecodeSelection& out) {
  const int V = vocab_size();
  out.fit(B, V);
  DUET_TRY(decode(slot_ids, tokens, B, out.rows));
  for (int b = 0; b < B; ++b) {
    if (top[b] <= 0) continue;
    const size_t at = static_cast<size_t>(b) * kMaxTopCandidates;
    select_top(out.rows.data() + static_cast<size_t>(b) * V, V, top[b], out.values.data() + at, out.ids.data() + at);
  }
  return ok_status();
}

}  // namespace duet
