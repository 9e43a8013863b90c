// CudaModel: the Llama-family decoder on one NVIDIA GPU (--device cuda), the
// same block structure as CpuModel:
//   h   = x + Attn(norm1(x))
//   out = h + MLP(norm2(h))
// bf16 weights and activations with fp32 accumulation and an fp32 residual
// stream. Layers may have any width, so LP wide layers (2H heads, 2F FFN) run
// unchanged. RMSNorm gains of the layers are folded into the projections that
// read them (W' = W diag(g)), exactly as LP merging does.
//
// The model owns a static KV cache of `max_batch` sequences x `max_context`
// positions ([seq, Hkv, S, Dh] bf16 per layer). Each sequence has its own
// length. decode() runs one token for each of B sequences, each at its own
// position, as one CUDA graph per B (captured on first use). prefill() runs a
// prompt of one sequence. Logits come back to the host as float32; sampling is
// the caller's. Plain C++ header: compiles without nvcc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_model.h"  // LogitsMode
#include "core/result.h"
#include "model/config.h"
#include "model/lp_plan.h"
#include "model/weights.h"
#include "parallel/communicator.h"

namespace duet {

struct CudaModelOptions {
  int max_batch = 1;      // sequences held in the KV cache, decoded together
  int max_context = 2048; // S: positions per sequence
  int max_prefill = 2048; // tokens per prefill chunk (longer prompts run in chunks)
  bool use_graphs = true; // capture decode steps in CUDA graphs
};

class CudaModel {
 public:
  // Uploads float32 host weights as bf16 (LP plans are applied to `weights` beforehand).
  static Result<std::unique_ptr<CudaModel>> create(const ModelWeights& weights, const CudaModelOptions& options);
  // Random bf16 weights generated on the GPU for the config's shape with `plan` merged:
  // for speed measurements at real sizes without building float32 host weights.
  static Result<std::unique_ptr<CudaModel>> create_random(const ModelConfig& config, const LpPlan& plan,
                                                          const CudaModelOptions& options, uint64_t seed);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ModelConfig& config() const;
  int depth() const;  // layers after LP merging
  int max_batch() const;
  int max_context() const;

  int length(int seq) const;  // positions filled for sequence seq
  void reset(int seq);
  void reset_all();
  // Declares that sequence seq holds `length` positions (bench: a warm cache of random K/V).
  Status set_length(int seq, int length);

  // Tensor parallelism (model/tp_shard.h): this model holds rank comm->rank()'s shard, and its
  // attention output and FFN down projections become partial sums completed by an all-reduce of
  // the residual stream on `comm` (device buffers, enqueued on stream(); NCCL calls land inside
  // the decode graphs). Rank 0 adds its partial to the stream, the others to zeros, so the sum is
  // x + sum of partials. Every rank computes the (replicated) logits. Call before the first step;
  // `comm` must outlive the model.
  Status set_communicator(Communicator* comm);
  // The cudaStream_t every step is enqueued on (void* keeps this header free of CUDA).
  void* stream() const;

  // Runs tokens[0..T) of sequence seq at positions length(seq).. and appends their K/V.
  // logits: [T, V] for LogitsMode::All, [1, V] for Last.
  Status prefill(int seq, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits);
  // Scores tokens[0..T) as sequence seq from position 0: log_probs[t] = log P(tokens[t+1] | tokens[..t]) and
  // argmax[t] = the most likely token after tokens[..t], for t in [0, T-1). The log-softmax runs on the GPU, so
  // only these 2(T-1) values come back. The sequence is left empty.
  Status score(int seq, const int32_t* tokens, int T, float* log_probs, int32_t* argmax);
  // One token for each of sequences 0..B-1, each at its own position length(b). logits: [B, V].
  Status decode(const int32_t* tokens, int B, std::vector<float>& logits);
  // One token for each of the B distinct sequences seqs[0..B), each at its own position. logits: [B, V].
  Status decode_sequences(const int32_t* seqs, const int32_t* tokens, int B, std::vector<float>& logits);
  // decode_sequences, copying back per row b only what top[b] asks for: top[b] in [1, kMaxSelect]: its
  // top[b] best logits (best first, ties to the lower id) and their ids, selected on the GPU, to
  // values/ids + b * kMaxSelect; top[b] == 0: its whole row to rows + b * V.
  static constexpr int kMaxSelect = 64;
  Status decode_select(const int32_t* seqs, const int32_t* tokens, int B, const int32_t* top, float* values,
                       int32_t* ids, float* rows);

  // Bench: mean device time of `steps` decode steps of B sequences at their current
  // lengths (graph replays, positions held fixed, no host copies), in milliseconds.
  Result<double> time_decode(int B, int warmup, int steps);
  // Bench: mean device time of a T-token prefill of sequence 0 from position 0, in milliseconds.
  Result<double> time_prefill(int T, int warmup, int reps);
  // Bench: one T-token prefill (as time_prefill) with a CUDA event after every stage, summed over the
  // layers: (stage, ms) in pipeline order (rms_norm, gemm_qkv, rope_qkv_write, attention, gemm_out,
  // gemm_gate_up, silu_mul, gemm_down, logits). Event gaps cost ~2% over the plain timing.
  Result<std::vector<std::pair<std::string, double>>> prefill_breakdown(int T);

  // Bytes one decode step of B sequences must move: all weights once (embedding rows only for
  // the B tokens) plus the valid K/V of every sequence read and the new K/V written.
  double decode_step_bytes(int B, int context) const;
  // FLOPs of a T-token prefill from position 0 (2 per weight per token + causal attention).
  double prefill_flops(int T) const;
  int64_t weight_bytes() const;

 private:
  struct Impl;
  explicit CudaModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Copy bandwidth of the current GPU in bytes/s (bytes read + written) from a `bytes`-sized
// device-to-device copy, the ceiling a memory-bound step is measured against.
Result<double> measure_copy_bandwidth(int64_t bytes);

// Name of the current GPU, for reports.
std::string cuda_device_name();
// GPUs visible to this process (0 when CUDA cannot start), and selecting one for this thread.
int cuda_device_count();
Status cuda_set_device(int device);

}  // namespace duet
