// CUDA kernels: one launcher and one-line contract per op, the GPU side of
// kernels/ops.h. bf16 weights and activations, fp32 accumulation, fp32 residual
// stream. Row-major, last dim contiguous. Every launcher enqueues on `stream`,
// checks the launch and returns a Status (no sync, so all are graph-capturable).
// Shapes: T rows (tokens), D model dim, H/Hkv heads, Dh head dim, F FFN width,
// S cache positions per sequence, N/K output/input features of a linear map.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"

namespace duet::cuda {

// embed: x[t,:] = float(table[tokens[t],:]). tokens [T] int32; table [V,D] bf16; x [T,D] f32.
Status embed(const int32_t* tokens, const bf16* table, float* x, int T, int D, cudaStream_t stream);

// rms_norm: y[t,:] = bf16(x[t,:] * rsqrt(mean(x[t,:]^2) + eps) * w). x [T,D] f32; w [D] f32 or null (gain 1); y [T,D] bf16.
Status rms_norm(const float* x, const float* w, bf16* y, int T, int D, float eps, cudaStream_t stream);

// silu_mul_interleaved: h[t,i] = bf16(silu(gu[t,2i]) * gu[t,2i+1]). gu [T,2F] bf16 (gate/up rows interleaved); h [T,F] bf16.
Status silu_mul_interleaved(const bf16* gu, bf16* h, int T, int F, cudaStream_t stream);

// fill_uniform: p[i] = bf16(offset + scale * u), u uniform in [-1,1) from a hash of (seed, i). p [n] bf16.
Status fill_uniform(bf16* p, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t stream);
// fill_uniform_f32: as fill_uniform for an f32 array.
Status fill_uniform_f32(float* p, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t stream);

// rope_qkv_write: splits qkv [T,(H+2Hkv)*Dh] (f32, or bf16 when qkv_bf16) into heads, adds bias
// [(H+2Hkv)*Dh] (or null), applies per-head RMS norm with gains q_norm [H,Dh] / k_norm [Hkv,Dh] (or null),
// rotates q and k at position pos[t] with cos/sin [S,Dh/2], writes q [T,H,Dh] bf16 and k/v into the caches
// [slots,Hkv,S,Dh] bf16 at (slot[t], pos[t]). pos, slot [T] int32 on the device. RoPE pairs are adjacent
// dims (2i, 2i+1) with frequency i: CudaModel stores the q/k rows of half-split checkpoints permuted into
// that order, which leaves every q.k product unchanged.
struct RopeQkvArgs {
  const void* qkv = nullptr;
  bool qkv_bf16 = false;
  const float* bias = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  float eps = 1e-6f;
  const float* cos = nullptr;
  const float* sin = nullptr;
  const int32_t* pos = nullptr;
  const int32_t* slot = nullptr;
  bf16* q = nullptr;
  bf16* k_cache = nullptr;
  bf16* v_cache = nullptr;
  int T = 0, H = 0, Hkv = 0, Dh = 0, S = 0;
  // Prompts (qkv_bf16) without bias or q norm: q is neither rotated nor written (q unused); attention_prefill
  // rotates it as it loads it (QueryRope).
  bool skip_q = false;
};
Status rope_qkv_write(const RopeQkvArgs& args, cudaStream_t stream);

// gemv: y[t,n] (op)= sum_k in[t,k] W[n,k] for T <= kGemvMaxRows rows, streaming W once with 16-byte loads.
// W [N,K] bf16, N even, K % 8 == 0, W 16-byte aligned. The input rows are staged in shared memory as bf16:
//   GemvInput::Bf16       in [T,K] bf16
//   GemvInput::F32RmsNorm in [T,K] f32, normalised on the way in: x * rsqrt(mean(x^2)+eps) * (norm_w or 1)
//   GemvInput::Embedding  in [V,K] bf16, the embedding table: x[t] = float(in[tokens[t]]) is normalised as
//                         F32RmsNorm's input is, and also written to residual [T,K] f32 (the first layer's
//                         QKV projection gathers the embeddings itself; StoreF32, StoreBf16, RopeQkvWrite)
//   GemvInput::AttentionPartials  in unused; x[t] = bf16 of the merge of attention_decode_split_kv's chunk
//                         partials (GemvArgs::partials, K = H*Dh): what its merge kernel would write (the out
//                         projection merges them while staging its input; AddF32 only)
// Outputs:
//   GemvOutput::StoreF32    y [T,N] f32:  y = acc
//   GemvOutput::AddF32      y [T,N] f32:  y += acc (residual add; over a long K, or when W is small enough
//                                          to be latency-bound, slices of K add with atomics, so the
//                                          summation order varies from run to run)
//   GemvOutput::StoreBf16   y [T,N] bf16: y = acc
//   GemvOutput::SiluMulBf16 y [T,N/2] bf16: y[t,i] = silu(acc[t,2i]) * acc[t,2i+1] (W rows gate/up interleaved)
//   GemvOutput::RopeQkvWrite  W is the fused q|k|v projection and acc its row; what rope_qkv_write does with
//                             it (bias, RoPE, q and K/V cache writes; no q/k norm) happens in the epilogue.
constexpr int kGemvMaxRows = 8;
enum class GemvInput { Bf16, F32RmsNorm, Embedding, AttentionPartials };
// Unmerged flash-decoding chunks of T queries (AttentionDecodeArgs has the layout): acc [T,H,n_chunks,Dh] and
// (max, sum) pairs ml [T,H,n_chunks,2] f32; row t has ceil((pos[t] + 1) / chunk) valid chunks; Dh 64 or 128.
struct AttentionPartials {
  const float* acc = nullptr;
  const float* ml = nullptr;
  const int32_t* pos = nullptr;
  int H = 0, Dh = 0, chunk = 0, n_chunks = 0;
};
enum class GemvOutput { StoreF32, AddF32, StoreBf16, SiluMulBf16, RopeQkvWrite };
struct GemvArgs {
  const bf16* w = nullptr;  // [N,K]
  int N = 0, K = 0, T = 0;
  const void* in = nullptr;  // [T,K]
  GemvInput in_kind = GemvInput::Bf16;
  const float* norm_w = nullptr;  // [K] or null
  float eps = 1e-5f;
  void* out = nullptr;  // unused by RopeQkvWrite
  GemvOutput out_kind = GemvOutput::StoreF32;
  RopeQkvArgs rope;  // RopeQkvWrite only (qkv, q_norm and k_norm unused)
  const int32_t* tokens = nullptr;  // Embedding only: [T]
  float* residual = nullptr;        // Embedding only: [T,K]
  AttentionPartials partials;       // AttentionPartials only
};
// Whether gemv handles T rows of K inputs (row count and shared-memory size).
bool gemv_supported(int T, int K);
// Whether W [N,K] is small enough that a gemv launch is mostly latency rather than streaming: such
// residual-add launches split K into short slices, such a QKV projection lets the next kernel launch only
// after its wait (gemv.cu), and the model lets attention behind it prefetch its K/V
// (AttentionDecodeArgs::prefetch_kv).
bool gemv_latency_bound(int N, int K);
Status gemv(const GemvArgs& args, cudaStream_t stream);

// The cuBLASLt GEMMs (prefill, decode batches over 8 rows) are GemmRunner (gemm.cuh).


// attention_decode_split_kv (flash-decoding): for each query i, out[i,h,:] = softmax_s(q[i,h,:].k[s]/sqrt(Dh)) v[s]
// over the valid cache positions s in [0, pos[i]] of sequence slot[i], KV head h / (H/Hkv). Keys are cut
// into chunks of `chunk` positions, one block per (chunk, KV head, query); a second kernel, or the last chunk
// block to finish, merges the chunks. q [Nq,H,Dh] bf16; caches [slots,Hkv,S,Dh] bf16; out [Nq,H*Dh] bf16;
// part_acc [Nq,H,n_chunks,Dh] f32, part_ml [Nq,H,n_chunks,2] f32 scratch with n_chunks = ceil(S / chunk);
// merge_count [Nq,Hkv] int32, zero before the first call (each call leaves it zero). Dh in {64, 128};
// H/Hkv <= 8.
struct AttentionDecodeArgs {
  const bf16* q = nullptr;
  const bf16* k_cache = nullptr;
  const bf16* v_cache = nullptr;
  const int32_t* pos = nullptr;
  const int32_t* slot = nullptr;
  bf16* out = nullptr;
  float* part_acc = nullptr;
  float* part_ml = nullptr;
  int* merge_count = nullptr;
  int Nq = 0, H = 0, Hkv = 0, Dh = 0, S = 0, chunk = 0;
  // A small layer: pull the chunk's cached K/V rows into L2 before waiting on the previous kernel (only
  // behind a small QKV projection, which would otherwise evict them again, and for a cache of at most 4 MB,
  // checked here), and merge the chunks in a separate kernel.
  bool prefetch_kv = false;
  // With prefetch_kv: leave the chunks unmerged (out unwritten) for the next kernel, a gemv with
  // GemvInput::AttentionPartials, to merge.
  bool merge_in_consumer = false;
};
Status attention_decode_split_kv(const AttentionDecodeArgs& args, cudaStream_t stream);

// attention_prefill: causal attention of T new tokens of one sequence at positions pos0..pos0+T-1 over the
// cache positions [0, pos0+T) (flash attention on tensor cores; scores never leave registers). q [T,H,Dh]
// bf16; k/v [Hkv,S,Dh] bf16 (one sequence's cache, Hkv*S*Dh < 2^31); out [T,H*Dh] bf16. Dh in {64,128}.
// Auto runs Dh = 128 on warpgroup MMA (wgmma) on compute capability 9.0 and everything else on mma.sync;
// the other two force one kernel (tests; Wgmma needs Dh = 128 on compute capability 9.0).
// With rope.cos set, q is instead the unrotated q columns of the fused QKV projection (row stride
// rope.row_stride elements), rotated as the kernel loads them with cos/sin [S,Dh/2] f32 at positions
// pos0 + t, adjacent pairs as in rope_qkv_write; only the wgmma kernel does this (attention_prefill_rotates_q).
enum class PrefillAttentionKernel { Auto, MmaSync, Wgmma };
struct QueryRope {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t row_stride = 0;
};
Status attention_prefill(const bf16* q, const bf16* k, const bf16* v, bf16* out, int T, int pos0, int H, int Hkv,
                         int Dh, int S, cudaStream_t stream, const QueryRope& rope = {},
                         PrefillAttentionKernel kernel = PrefillAttentionKernel::Auto);
// Whether attention_prefill's Auto kernel takes a QueryRope at head dim Dh on the current device.
Result<bool> attention_prefill_rotates_q(int Dh);

// token_log_probs: log_probs[r] = logits[r,targets[r]] - logsumexp(logits[r,:]); argmax[r] = lowest index of
// max(logits[r,:]). logits [rows,V] f32; targets, argmax [rows] int32; log_probs [rows] f32.
Status token_log_probs(const float* logits, int rows, int V, const int32_t* targets, float* log_probs,
                       int32_t* argmax, cudaStream_t stream);

// row_top_k: for each row r with k = top[r] > 0, values[r*stride + i], ids[r*stride + i] for i < k = the k
// largest of logits[r,:], best first, ties to the lower index (select_top's order); NaN is never chosen and
// a slot left without a candidate gets id -1. logits [rows,V] f32; top [rows] int32 (<= stride).
Status row_top_k(const float* logits, int rows, int V, const int32_t* top, int stride, float* values,
                 int32_t* ids, cudaStream_t stream);

}  // namespace duet::cuda
