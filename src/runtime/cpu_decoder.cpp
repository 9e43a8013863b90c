// The CPU Decoder: CpuModel plus one KvCache.
//
// Scoring (duet eval) runs a batch's sequences in token order, so sequences
// that share a prefix (a task item's choices after one context) come one after
// the other: the cache keeps the shared positions and only the rest runs. The
// vocabulary projection and log-softmax run only for the positions whose
// scores are asked for. Every position's arithmetic is what a whole-sequence
// forward gives it (attention reads the same cached K/V; under int8 arithmetic
// the projections are bit-identical for any T, under float32 equal up to
// sgemm's summation order).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "eval/perplexity.h"
#include "runtime/decoder.h"
#include "runtime/sampler.h"

namespace duet {
namespace {

class CpuDecoder final : public Decoder {
 public:
  CpuDecoder(const ModelWeights& weights, int capacity, CpuArithmetic arithmetic)
      : model_(weights, capacity, nullptr, arithmetic), cache_(model_.new_cache(capacity)) {}

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    return model_.forward(tokens, T, cache_, mode, logits);
  }
  void reset() override { cache_.clear(); }
  int position() const override { return cache_.length; }
  int capacity() const override { return cache_.capacity; }
  int vocab_size() const override { return model_.config().vocab_size; }
  std::string device_name() const override { return "cpu"; }

  Status score_sequences(const std::vector<std::vector<int32_t>>& sequences,
                         std::vector<SequenceScores>& scores) override {
    return score_sequences_from(sequences, std::vector<int>(sequences.size(), 1), scores);
  }

  Status score_sequences_from(const std::vector<std::vector<int32_t>>& sequences, const std::vector<int>& first_scored,
                              std::vector<SequenceScores>& scores) override {
    if (first_scored.size() != sequences.size()) {
      return make_error("score_sequences_from: ", first_scored.size(), " first positions for ", sequences.size(),
                        " sequences");
    }
    for (size_t s = 0; s < sequences.size(); ++s) {
      const int T = static_cast<int>(sequences[s].size());
      if (T < 2) return make_error("score_sequences: sequence ", s, " has fewer than 2 tokens");
      if (first_scored[s] < 1 || first_scored[s] >= T) {
        return make_error("score_sequences_from: first scored token ", first_scored[s], " of sequence ", s,
                          " is outside [1, ", T, ")");
      }
    }
    std::vector<size_t> order(sequences.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sequences[a] < sequences[b]; });

    scores.assign(sequences.size(), {});
    cache_.clear();
    const std::vector<int32_t>* cached = nullptr;  // the tokens whose K/V the cache holds
    std::vector<float> logits;
    const int V = vocab_size();
    for (size_t s : order) {
      const std::vector<int32_t>& tokens = sequences[s];
      const int T = static_cast<int>(tokens.size()), first_row = first_scored[s] - 1;
      // Keep the cached prefix shared with the previous sequence, up to the first row that needs logits.
      int keep = 0;
      if (cached != nullptr) {
        const auto [a, b] = std::mismatch(cached->begin(), cached->end(), tokens.begin(), tokens.end());
        keep = std::min(static_cast<int>(b - tokens.begin()), first_row);
      }
      cache_.length = keep;
      const int rows = T - 1 - first_row;  // rows first_row .. T-2 predict tokens first_row+1 .. T-1
      DUET_TRY(model_.forward_rows(tokens.data() + keep, T - keep, cache_, first_row - keep, rows, logits));
      cached = &tokens;

      SequenceScores& out = scores[s];
      out.log_probs.assign(T - 1, NAN);
      out.argmax.assign(T - 1, -1);
#pragma omp parallel for schedule(static)
      for (int r = 0; r < rows; ++r) {
        const float* row = logits.data() + static_cast<int64_t>(r) * V;
        out.log_probs[first_row + r] = static_cast<float>(token_log_prob(row, V, tokens[first_row + r + 1]));
        out.argmax[first_row + r] = argmax(row, V);
      }
    }
    cache_.clear();
    return ok_status();
  }

 private:
  CpuModel model_;
  KvCache cache_;
};

}  // namespace

std::unique_ptr<Decoder> make_cpu_decoder(const ModelWeights& weights, int capacity, CpuArithmetic arithmetic) {
  return std::make_unique<CpuDecoder>(weights, capacity, arithmetic);
}

}  // namespace duet
