// Decoder: one sequence's forward pass on some device, with its KV cache.
// The CLI, generation loop and evaluators talk to this, so `--device` only
// changes which implementation they get (cpu_decoder.h, backends/cuda/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/cpu_model.h"
#include "core/result.h"

namespace duet {

// Per-position results of scoring a sequence: entry t-1 is about token t.
struct SequenceScores {
  std::vector<float> log_probs;  // log P(tokens[t] | tokens[<t]) for t >= 1
  std::vector<int32_t> argmax;   // the most likely token at position t given tokens[<t]
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Runs tokens[0..T) after the cached positions; logits [T, V] (All) or [1, V] (Last), float32.
  virtual Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) = 0;
  // Forgets the cached positions (the next forward starts at position 0).
  virtual void reset() = 0;
  virtual int position() const = 0;  // positions cached so far
  virtual int capacity() const = 0;  // positions the cache can hold
  virtual int vocab_size() const = 0;
  virtual std::string device_name() const = 0;

  // Scores independent sequences, each from an empty cache (the cache is left
  // reset). The base version runs them one by one; a backend that can batch
  // sequences overrides it. Evaluators call this, so batching is one place.
  virtual Status score_sequences(const std::vector<std::vector<int32_t>>& sequences,
                                 std::vector<SequenceScores>& scores);
  // score_sequences when only the tokens t >= first_scored[s] of sequence s need scores (entries
  // t-1 >= first_scored[s]-1; first_scored[s] >= 1): a backend may skip the others, leaving
  // log_probs NaN and argmax -1 there. The base scores every position.
  virtual Status score_sequences_from(const std::vector<std::vector<int32_t>>& sequences,
                                      const std::vector<int>& first_scored, std::vector<SequenceScores>& scores) {
    return score_sequences(sequences, scores);
  }
};

// A Decoder on the CPU path (float32 reference arithmetic unless `arithmetic` says int8). `weights` must outlive it.
std::unique_ptr<Decoder> make_cpu_decoder(const ModelWeights& weights, int capacity,
                                          CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

// The CPU reference path under tensor parallelism: `tp` ranks as threads, each
// on its shard of `weights` (model/tp_shard.h); an error names a `tp` that does
// not split the model. `weights` may be freed after the call.
Result<std::unique_ptr<Decoder>> make_cpu_tp_decoder(const ModelWeights& weights, int capacity, int tp,
                                                     CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

// One rank of the CPU path under tensor parallelism with a rank per process
// (runtime/tp_leader.h): rank comm.rank()'s shard of `weights` (copied; `weights`
// may be freed), its all-reduces over `comm`. Only rank 0's forward returns logits.
Result<std::unique_ptr<Decoder>> make_cpu_tp_rank_decoder(const ModelWeights& weights, int capacity,
                                                          Communicator& comm,
                                                          CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

}  // namespace duet
