// BatchDecoder: many sequences in numbered KV-cache slots, stepped together.
// The server's engine loop (src/server/engine.h) is its only caller: each
// step it prefills a chunk of one slot's prompt and decodes one token for
// every slot that is generating, each at its own position. The CPU version
// keeps one KvCache per slot and runs a decode step's rows as one matmul
// (CpuModel::decode_batch); the CUDA version (backends/cuda/) steps CudaModel.
// Under --tp on the CPU each rank (a thread) steps its shard the same way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/cpu_model.h"
#include "core/result.h"
#include "runtime/sampler.h"

namespace duet {

// A decode step's output for callers that sample from a few candidates per row:
// row b with top[b] > 0 holds its top[b] best logits in values/ids from
// b * kMaxTopCandidates, best first, ties to the lower id (select_top's order);
// a row with top[b] == 0 holds its whole row of logits in rows from b * V.
// The vectors may be longer than B rows (a decoder may keep them from larger steps).
struct DecodeSelection {
  std::vector<float> values;  // [>= B, kMaxTopCandidates]
  std::vector<int32_t> ids;   // [>= B, kMaxTopCandidates]
  std::vector<float> rows;    // [>= B, V]; rows with top[b] > 0 may be left unwritten

  // Room for B rows of a V-token vocabulary. Grown, never shrunk: the batch moves by a row
  // or two most steps, and growing a vector zero-fills it.
  void fit(int B, int V);
};

class BatchDecoder {
 public:
  virtual ~BatchDecoder() = default;
  virtual int slots() const = 0;     // sequences held at once
  virtual int capacity() const = 0;  // positions per slot
  virtual int vocab_size() const = 0;
  virtual std::string device_name() const = 0;
  virtual int length(int slot) const = 0;  // positions cached in slot
  virtual void reset(int slot) = 0;        // empties slot

  // Runs tokens[0..T) of `slot` after its cached positions. logits [T, V] (All) or [1, V] (Last).
  virtual Status prefill(int slot, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) = 0;
  // One token for each of the B listed (distinct) slots, each at its own position.
  // logits [B, V], row b for slot_ids[b].
  virtual Status decode(const int32_t* slot_ids, const int32_t* tokens, int B, std::vector<float>& logits) = 0;
  // decode(), returning per row only what top[b] (0..kMaxTopCandidates) asks for. The CUDA
  // decoder selects on the device and copies those few values back instead of B x V logits
  // (12.6 MB per step at B = 64 for SmolLM2, longer than the step itself); this default
  // selects on the host.
  virtual Status decode_top(const int32_t* slot_ids, const int32_t* tokens, int B, const int32_t* top,
                            DecodeSelection& out);
};

// `weights` must outlive the decoder.
std::unique_ptr<BatchDecoder> make_cpu_batch_decoder(const ModelWeights& weights, int slots, int capacity,
                                                     CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

// The CPU batch decoder under tensor parallelism: `tp` ranks as threads, each
// a CpuModel on its shard with its own caches of every slot (as
// make_cpu_tp_decoder); an error names a `tp` that does not split the model.
// `weights` may be freed after the call.
Result<std::unique_ptr<BatchDecoder>> make_cpu_tp_batch_decoder(
    const ModelWeights& weights, int slots, int capacity, int tp, CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

}  // namespace duet
