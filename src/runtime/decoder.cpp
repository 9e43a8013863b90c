#include "runtime/decoder.h"

#include "eval/perplexity.h"
#include "runtime/sampler.h"

namespace duet {

Status Decoder::score_sequences(const std::vector<std::vector<int32_t>>& sequences,
                                std::vector<SequenceScores>& scores) {
  scores.assign(sequences.size(), {});
  std::vector<float> logits;
  const int V = vocab_size();
  for (size_t s = 0; s < sequences.size(); ++s) {
    const std::vector<int32_t>& tokens = sequences[s];
    if (tokens.size() < 2) return make_error("score_sequences: sequence ", s, " has fewer than 2 tokens");
    reset();
    DUET_TRY(forward(tokens.data(), static_cast<int>(tokens.size()), LogitsMode::All, logits));
    for (size_t t = 1; t < tokens.size(); ++t) {
      const float* row = logits.data() + (t - 1) * V;
      scores[s].log_probs.push_back(static_cast<float>(token_log_prob(row, V, tokens[t])));
      scores[s].argmax.push_back(argmax(row, V));
    }
  }
  reset();
  return ok_status();
}

}  // namespace duet
