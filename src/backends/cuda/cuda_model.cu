// CudaModel (cuda_model.h): weights upload, buffers, the forward pass and CUDA graphs.
//
// Per layer, a decode step of B <= 8 sequences is 5 or 6 kernels:
//   gemv(qkv, RMSNorm fused; bias, RoPE and the K/V cache write in its epilogue)
//   -> attention_decode_split_kv (chunks, then a merge: a separate kernel, or
//      the chunk kernel's last block for MHA-like groups of large layers)
//   -> gemv(out, residual add fused) -> gemv(gate|up, RMSNorm + SiLU-mul fused)
//   -> gemv(down, residual add fused)
// Models with q/k norm (qwen3) keep rope_qkv_write as a kernel after the QKV
// gemv. Small models (QKV weights <= 8 MB) also prefetch the cached K/V in
// attention while the gemv runs. Larger batches and prefill use cuBLAS for
// the linear maps (with RMSNorm, SiLU-mul and rope_qkv_write as separate
// kernels) and flash attention for prefill.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "backends/cuda/cuda_model.h"
#include "core/half.h"
#include "kernels/ops.h"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/ops.cuh"
#include "model/lp_merge.h"

namespace duet {

using cuda::bf16;

namespace {

struct DeviceLayer {
  int H = 0, Hkv = 0, F = 0;
  bf16* wqkv = nullptr;     // [(H+2Hkv)*Dh, D], attn_norm gain folded in, q/k rows in RoPE pair order
  float* bias = nullptr;    // [(H+2Hkv)*Dh] or null (qwen2)
  float* q_norm = nullptr;  // [H, Dh] or null (qwen3)
  float* k_norm = nullptr;  // [Hkv, Dh] or null
  bf16* wo = nullptr;       // [D, H*Dh]
  bf16* wgu = nullptr;      // [2F, D]: row 2i = gate_i, row 2i+1 = up_i; ffn_norm gain folded in
  bf16* wdown = nullptr;    // [D, F]
  bf16* k_cache = nullptr;  // [max_batch, Hkv, S, Dh]
  bf16* v_cache = nullptr;  // [max_batch, Hkv, S, Dh]
};

struct LayerShape {
  int H, Hkv, F;
};

std::vector<LayerShape> layer_shapes(const ModelConfig& c, const LpPlan& plan) {
  std::vector<LayerShape> shapes;
  size_t next_pair = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    if (next_pair < plan.pair_starts.size() && plan.pair_starts[next_pair] == l) {
      shapes.push_back({2 * c.n_heads, 2 * c.n_kv_heads, 2 * c.ffn_dim});
      ++l;
      ++next_pair;
    } else {
      shapes.push_back({c.n_heads, c.n_kv_heads, c.ffn_dim});
    }
  }
  return shapes;
}

// Mean device time in ms of `reps` calls of enqueue on `stream` (after `warmup` untimed ones), by CUDA events.
template <class Enqueue>
Result<double> mean_device_ms(cudaStream_t stream, int warmup, int reps, Enqueue enqueue) {
  for (int i = 0; i < warmup; ++i) DUET_TRY(enqueue());
  cudaEvent_t start, stop;
  DUET_CUDA_TRY(cudaEventCreate(&start));
  DUET_CUDA_TRY(cudaEventCreate(&stop));
  DUET_CUDA_TRY(cudaEventRecord(start, stream));
  for (int i = 0; i < reps; ++i) DUET_TRY(enqueue());
  DUET_CUDA_TRY(cudaEventRecord(stop, stream));
  DUET_CUDA_TRY(cudaEventSynchronize(stop));
  float ms = 0;
  DUET_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return static_cast<double>(ms) / reps;
}

}  // namespace

struct CudaModel::Impl {
  ModelConfig config;
  CudaModelOptions opt;
  std::vector<DeviceLayer> layers;
  bf16* embd = nullptr;        // [V, D]
  bf16* out_w = nullptr;       // [V, D]; == embd when tied
  float* out_norm = nullptr;   // [D]
  float* rope_cos = nullptr;   // [S, Dh/2]
  float* rope_sin = nullptr;   // [S, Dh/2]
  // Prompts: the attention kernel rotates q as it loads it (layers without QKV bias or q norm), so
  // rope_qkv_write reads and writes only k and v. Per 2048-token prompt on an H200, rope_qkv_write
  // 1.18-1.21 -> 0.85-0.87 ms at llama2-7b (0.68 -> 0.34 at llama3-8b), attention +0.05-0.15 ms; the
  // whole prompt -0.1 to -0.35 ms (bench/RESULTS.md at 7611f28, fourteenth pass).
  bool prefill_attention_rotates_q = false;
  int rows_cap = 0;            // max(max_batch, max_prefill)
  int logit_rows_cap = 0;
  float* x = nullptr;          // [rows, D] residual stream
  bf16* xn = nullptr;          // [rows, D]
  float* qkv = nullptr;        // [rows, (Hmax+2Hkvmax)*Dh] f32 (decode) or bf16 (prefill)
  bf16* q = nullptr;           // [rows, Hmax*Dh]
  bf16* attn = nullptr;        // [rows, Hmax*Dh]
  bf16* gu = nullptr;          // [rows, 2Fmax]
  bf16* h = nullptr;           // [rows, Fmax]
  float* logits = nullptr;     // [logit_rows_cap, V]
  int32_t* d_tok = nullptr;    // [rows]
  int32_t* d_pos = nullptr;    // [rows]
  int32_t* d_slot = nullptr;   // [rows]
  int32_t* d_top = nullptr;        // [max_batch] decode_select's candidates per row
  float* d_top_values = nullptr;   // [max_batch, kMaxSelect]
  int32_t* d_top_ids = nullptr;    // [max_batch, kMaxSelect]
  float* part_acc = nullptr;   // decode attention partials
  float* part_ml = nullptr;
  int* merge_count = nullptr;  // [max_batch, Hkvmax] chunks done per (sequence, KV head); 0 between steps
  cudaStream_t stream = nullptr;
  Communicator* comm = nullptr;  // tensor parallelism (set_communicator), or null
  std::unique_ptr<cuda::GemmRunner> gemms;
  void* workspace = nullptr;
  std::vector<int> lengths;
  std::map<int, cudaGraphExec_t> graphs;
  std::vector<void*> allocations;
  int Hmax = 0, Hkvmax = 0, Fmax = 0;
  int64_t weight_bytes = 0;
  // Prefill breakdown (CudaModel::prefill_breakdown): an event is recorded after each stage while prof_on
  // (the first rms_norm segment also holds the embedding gather).
  bool prof_on = false;
  std::vector<std::pair<std::string, cudaEvent_t>> prof_marks;
  void mark(const char* label) {
    if (!prof_on) return;
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) return;
    cudaEventRecord(e, stream);
    prof_marks.emplace_back(label, e);
  }

  ~Impl() {
    for (auto& [b, exec] : graphs) cudaGraphExecDestroy(exec);
    gemms.reset();
    for (void* p : allocations) cudaFree(p);
    if (stream) cudaStreamDestroy(stream);
  }

  template <class T>
  Status alloc(T** p, int64_t n) {
    void* raw = nullptr;
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
    const cudaError_t err = cudaMalloc(&raw, bytes);
    if (err != cudaSuccess) {
      return make_error("out of GPU memory allocating ", bytes / (1 << 20), " MiB (", cudaGetErrorString(err),
                        "); lower --batch or --ctx");
    }
    allocations.push_back(raw);
    *p = static_cast<T*>(raw);
    return ok_status();
  }

  Status upload(const std::vector<uint16_t>& host, bf16** p) {
    DUET_TRY(alloc(p, static_cast<int64_t>(host.size())));
    DUET_CUDA_TRY(cudaMemcpy(*p, host.data(), host.size() * 2, cudaMemcpyHostToDevice));
    return ok_status();
  }
  Status upload(const std::vector<float>& host, float** p) {
    DUET_TRY(alloc(p, static_cast<int64_t>(host.size())));
    DUET_CUDA_TRY(cudaMemcpy(*p, host.data(), host.size() * 4, cudaMemcpyHostToDevice));
    return ok_status();
  }

  // A layer whose QKV projection (nqkv rows) is a gemv launch that is mostly latency at T rows: its attention
  // prefetches K/V and merges in a separate kernel, and its chunks stay at 64 keys or more.
  bool small_layer(int T, int nqkv) const {
    return cuda::gemv_supported(T, config.dim) && cuda::gemv_latency_bound(nqkv, config.dim);
  }

  // Tensor parallelism: before a row-parallel projection adds its partial sum into the residual stream
  // x [T, D], ranks other than 0 zero their x, so that the all-reduce after it yields x + sum of partials.
  Status begin_partial_sum(int T) {
    if (!comm || comm->rank() == 0) return ok_status();
    DUET_CUDA_TRY(cudaMemsetAsync(x, 0, static_cast<size_t>(T) * config.dim * sizeof(float), stream));
    return ok_status();
  }
  Status end_partial_sum(int T) {
    if (!comm) return ok_status();
    DUET_TRY(comm->all_reduce_sum(x, static_cast<int64_t>(T) * config.dim));
    mark("all_reduce");
    return ok_status();
  }

  int kv_chunk(int B) const {
    // Enough (chunk, KV head, sequence) blocks to fill the chip twice over, in chunks of at least 64 keys,
    // or, for one sequence over large layers, 32: llama3-8b batch 1 4.005 -> 3.946 ms per step, qwen2.5-7b
    // 3.787 -> 3.758, llama3.2-1b 0.808 -> 0.798 (H200; means of alternated runs, bench/RESULTS.md at 7611f28). Not
    // for small layers, where 32-key chunks doubled the merge kernel's work (smollm2-135m 0.416 -> 0.434
    // ms), nor for two sequences (qwen2.5-7b batch 2 4.064 -> 4.082 ms).
    const ModelConfig& c = config;
    const int units = std::max(1, B * c.n_kv_heads);
    const int wanted = std::max(1, (264 + units - 1) / units);
    const int chunk = (opt.max_context + wanted - 1) / wanted;
    if (B == 1 && !small_layer(B, (c.n_heads + 2 * c.n_kv_heads) * c.head_dim) && chunk <= 32) return 32;
    return std::max(64, (chunk + 63) / 64 * 64);
  }

  // Everything not tied to the weights: stream, cuBLAS, RoPE table, activations, KV cache, scratch.
  Status init_runtime(const std::vector<LayerShape>& shapes) {
    const ModelConfig& c = config;
    if (c.head_dim != 64 && c.head_dim != 128) {
      return make_error("CUDA backend: head_dim ", c.head_dim, " unsupported (expected 64 or 128)");
    }
    if (c.dim % 8 != 0) return make_error("CUDA backend: dim ", c.dim, " must be a multiple of 8");
    if (opt.max_batch < 1 || opt.max_context < 1 || opt.max_prefill < 1) {
      return make_error("CUDA backend: max_batch, max_context and max_prefill must be positive");
    }
    for (const LayerShape& s : shapes) {
      Hmax = std::max(Hmax, s.H);
      Hkvmax = std::max(Hkvmax, s.Hkv);
      Fmax = std::max(Fmax, s.F);
      if (s.F % 8 != 0) return make_error("CUDA backend: ffn_dim ", s.F, " must be a multiple of 8");
    }
    DUET_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const size_t ws_bytes = 32u << 20;
    DUET_TRY(alloc(reinterpret_cast<char**>(&workspace), static_cast<int64_t>(ws_bytes)));
    DUET_ASSIGN_OR_RETURN(gemms, cuda::GemmRunner::create(workspace, ws_bytes));

    const int S = opt.max_context, Dh = c.head_dim;
    std::vector<float> cos(static_cast<size_t>(S) * Dh / 2), sin(cos.size());
    cpu::rope_table_fill(c, S, cos.data(), sin.data());
    DUET_TRY(upload(cos, &rope_cos));
    DUET_TRY(upload(sin, &rope_sin));
    DUET_ASSIGN_OR_RETURN(prefill_attention_rotates_q, cuda::attention_prefill_rotates_q(Dh));

    rows_cap = std::max(opt.max_batch, opt.max_prefill);
    logit_rows_cap = std::max(opt.max_batch, 8);
    const int64_t R = rows_cap;
    DUET_TRY(alloc(&x, R * c.dim));
    DUET_TRY(alloc(&xn, R * std::max(c.dim, Fmax)));
    DUET_TRY(alloc(&qkv, R * (Hmax + 2 * Hkvmax) * Dh));
    DUET_TRY(alloc(&q, R * Hmax * Dh));
    DUET_TRY(alloc(&attn, R * Hmax * Dh));
    DUET_TRY(alloc(&gu, R * 2 * Fmax));
    DUET_TRY(alloc(&h, R * Fmax));
    DUET_TRY(alloc(&logits, static_cast<int64_t>(logit_rows_cap) * c.vocab_size));
    DUET_TRY(alloc(&d_tok, R));
    DUET_TRY(alloc(&d_pos, R));
    DUET_TRY(alloc(&d_slot, R));
    DUET_TRY(alloc(&d_top, opt.max_batch));
    DUET_TRY(alloc(&d_top_values, static_cast<int64_t>(opt.max_batch) * kMaxSelect));
    DUET_TRY(alloc(&d_top_ids, static_cast<int64_t>(opt.max_batch) * kMaxSelect));
    int64_t part_rows = 0;
    for (int B = 1; B <= opt.max_batch; ++B) {
      part_rows = std::max<int64_t>(part_rows, static_cast<int64_t>(B) * ((S + kv_chunk(B) - 1) / kv_chunk(B)));
    }
    DUET_TRY(alloc(&part_acc, part_rows * Hmax * Dh));
    DUET_TRY(alloc(&part_ml, part_rows * Hmax * 2));
    DUET_TRY(alloc(&merge_count, static_cast<int64_t>(opt.max_batch) * Hkvmax));
    DUET_CUDA_TRY(cudaMemset(merge_count, 0, sizeof(int) * opt.max_batch * Hkvmax));

    for (size_t l = 0; l < layers.size(); ++l) {
      const int64_t n = static_cast<int64_t>(opt.max_batch) * layers[l].Hkv * S * Dh;
      DUET_TRY(alloc(&layers[l].k_cache, n));
      DUET_TRY(alloc(&layers[l].v_cache, n));
      // Random contents, so a bench that declares a warm cache (set_length) reads real numbers.
      DUET_TRY(cuda::fill_uniform(layers[l].k_cache, n, 1000 + 2 * l, 1.0f, 0.0f, stream));
      DUET_TRY(cuda::fill_uniform(layers[l].v_cache, n, 1001 + 2 * l, 1.0f, 0.0f, stream));
    }
    lengths.assign(opt.max_batch, 0);
    DUET_CUDA_TRY(cudaStreamSynchronize(stream));
    return tune_prefill_gemms();
  }

  // A prompt runs in chunks of max_prefill rows, so those are the GEMMs that carry prefill time: each
  // distinct shape gets its cuBLASLt algorithm by timing (GemmRunner::tune; tens of ms per shape at
  // creation). The QKV and gate/up GEMMs of a prompt write bf16; out and down add into the f32 stream.
  Status tune_prefill_gemms() {
    const int T = opt.max_prefill, D = config.dim, Dh = config.head_dim;
    if (cuda::gemv_supported(T, D)) return ok_status();  // prompts this short run on gemv
    DUET_CUDA_TRY(cudaDeviceSynchronize());  // weight uploads and fills (some on the legacy stream) are done
    for (const DeviceLayer& L : layers) {
      DUET_TRY(gemms->tune(L.wqkv, false, T, (L.H + 2 * L.Hkv) * Dh, D, 0.0f));
      DUET_TRY(gemms->tune(L.wo, true, T, D, L.H * Dh, 1.0f));
      DUET_TRY(gemms->tune(L.wgu, false, T, 2 * L.F, D, 0.0f));
      DUET_TRY(gemms->tune(L.wdown, true, T, D, L.F, 1.0f));
    }
    return ok_status();
  }

  // One linear map: picks gemv (T <= 8 rows, fused prologue/epilogue) or cuBLAS plus separate kernels.
  // `rope` is RopeQkvWrite's epilogue (gemv only). GemvInput::Embedding (in = the embedding table) gathers
  // the staged tokens' rows (d_tok) and starts the residual stream x with them.
  // GemvInput::AttentionPartials (gemv only) merges `partials` as its input.
  Status linear(const void* in, cuda::GemvInput in_kind, const float* norm_w, const bf16* w, int N, int K, int T,
                void* out, cuda::GemvOutput out_kind, const cuda::RopeQkvArgs* rope = nullptr,
                const cuda::AttentionPartials* partials = nullptr) {
    if (cuda::gemv_supported(T, K)) {
      cuda::GemvArgs a;
      a.w = w;
      a.N = N;
      a.K = K;
      a.T = T;
      a.in = in;
      a.in_kind = in_kind;
      a.norm_w = norm_w;
      a.eps = config.rms_eps;
      a.out = out;
      a.out_kind = out_kind;
      if (rope) a.rope = *rope;
      if (partials) a.partials = *partials;
      a.tokens = d_tok;
      a.residual = x;
      return cuda::gemv(a, stream);
    }
    if (in_kind == cuda::GemvInput::AttentionPartials) {
      return make_error("linear: AttentionPartials needs the gemv path");
    }
    const bf16* x_bf16 = static_cast<const bf16*>(in);
    if (in_kind == cuda::GemvInput::Embedding) {
      DUET_TRY(cuda::embed(d_tok, static_cast<const bf16*>(in), x, T, K, stream));
      in = x;
      in_kind = cuda::GemvInput::F32RmsNorm;
    }
    if (in_kind == cuda::GemvInput::F32RmsNorm) {
      DUET_TRY(cuda::rms_norm(static_cast<const float*>(in), norm_w, xn, T, K, config.rms_eps, stream));
      mark("rms_norm");
      x_bf16 = xn;
    }
    switch (out_kind) {
      case cuda::GemvOutput::StoreF32: return gemms->run(x_bf16, w, out, true, T, N, K, 0.0f, stream);
      case cuda::GemvOutput::StoreBf16: return gemms->run(x_bf16, w, out, false, T, N, K, 0.0f, stream);
      case cuda::GemvOutput::AddF32: return gemms->run(x_bf16, w, out, true, T, N, K, 1.0f, stream);
      case cuda::GemvOutput::SiluMulBf16:
        DUET_TRY(gemms->run(x_bf16, w, gu, false, T, N, K, 0.0f, stream));
        mark("gemm_gate_up");
        return cuda::silu_mul_interleaved(gu, static_cast<bf16*>(out), T, N / 2, stream);
      case cuda::GemvOutput::RopeQkvWrite: break;  // gemv only (enqueue_layers checks gemv_supported first)
    }
    return make_error("linear: unknown output kind");
  }

  // The layers over T rows whose tokens, positions and slots are in d_tok/d_pos/d_slot.
  // Decode: row t is sequence d_slot[t]. Prefill: all rows belong to `seq`, positions pos0.. .
  Status enqueue_layers(int T, bool decode_phase, int seq, int pos0) {
    const ModelConfig& c = config;
    const int D = c.dim, Dh = c.head_dim, S = opt.max_context;
    using cuda::GemvInput;
    using cuda::GemvOutput;
    for (const DeviceLayer& L : layers) {
      // The first layer's QKV projection gathers the embeddings itself. A separate one-block embedding
      // kernel ahead of it took 9.6 us under the QKV gemv's early weight loads (kernel timeline,
      // tools/gpu/kernel_trace.cpp); llama2-7b batch 1: 3.536-3.540 -> 3.530-3.535 ms per step.
      const bool first = &L == &layers.front();
      const void* qkv_in = first ? static_cast<const void*>(embd) : x;
      const GemvInput qkv_in_kind = first ? GemvInput::Embedding : GemvInput::F32RmsNorm;
      const int nqkv = (L.H + 2 * L.Hkv) * Dh;
      cuda::RopeQkvArgs r;
      r.bias = L.bias;
      r.q_norm = L.q_norm;
      r.k_norm = L.k_norm;
      r.eps = c.rms_eps;
      r.cos = rope_cos;
      r.sin = rope_sin;
      r.pos = d_pos;
      r.slot = d_slot;
      r.q = q;
      r.k_cache = L.k_cache;
      r.v_cache = L.v_cache;
      r.T = T;
      r.H = L.H;
      r.Hkv = L.Hkv;
      r.Dh = Dh;
      r.S = S;
      // Fusing RoPE into the QKV gemv saves a launch (smollm2-135m: -0.02 ms per step, llama2-7b: -0.02 to
      // -0.03 ms once every gemv preloads its weights; +0.03 to +0.1 ms before).
      if (decode_phase && !L.q_norm && cuda::gemv_supported(T, D)) {
        DUET_TRY(linear(qkv_in, qkv_in_kind, nullptr, L.wqkv, nqkv, D, T, nullptr, GemvOutput::RopeQkvWrite, &r));
      } else {
        // A prompt's projection goes out as bf16 (half the bytes through rope_qkv_write). Batched decode
        // keeps f32 so that a batch gives the same tokens as its sequences decoded alone (CudaBatch).
        r.qkv = qkv;
        r.qkv_bf16 = !decode_phase;
        r.skip_q = !decode_phase && prefill_attention_rotates_q && !L.bias && !L.q_norm;
        DUET_TRY(linear(qkv_in, qkv_in_kind, nullptr, L.wqkv, nqkv, D, T, qkv,
                        r.qkv_bf16 ? GemvOutput::StoreBf16 : GemvOutput::StoreF32));
        mark("gemm_qkv");
        DUET_TRY(cuda::rope_qkv_write(r, stream));
        mark("rope_qkv_write");
      }
      // At batch 1 a small layer's out projection merges the attention's chunks as it stages its input, in
      // place of the merge kernel (bench/RESULTS.md at 7611f28, thirteenth pass: smollm2-135m -0.7 to -2.4%
      // per step). With more rows a warp merges several heads one after the other, a round trip each, and the
      // merge kernel was faster (batch 4 +7% fused).
      const bool layer_is_small = small_layer(T, nqkv);
      const bool merge_in_out = decode_phase && T == 1 && layer_is_small && cuda::gemv_supported(T, L.H * Dh);
      cuda::AttentionPartials partials;
      if (decode_phase) {
        cuda::AttentionDecodeArgs a;
        a.q = q;
        a.k_cache = L.k_cache;
        a.v_cache = L.v_cache;
        a.pos = d_pos;
        a.slot = d_slot;
        a.out = attn;
        a.part_acc = part_acc;
        a.part_ml = part_ml;
        a.merge_count = merge_count;
        a.Nq = T;
        a.H = L.H;
        a.Hkv = L.Hkv;
        a.Dh = Dh;
        a.S = S;
        a.chunk = kv_chunk(T);
        a.prefetch_kv = layer_is_small;
        a.merge_in_consumer = merge_in_out;
        partials = {part_acc, part_ml, d_pos, L.H, Dh, a.chunk, (S + a.chunk - 1) / a.chunk};
        DUET_TRY(cuda::attention_decode_split_kv(a, stream));
      } else {
        const int64_t off = static_cast<int64_t>(seq) * L.Hkv * S * Dh;
        cuda::QueryRope rope;  // q unrotated in the projection's rows when rope_qkv_write skipped it
        if (r.skip_q) rope = {rope_cos, rope_sin, nqkv};
        DUET_TRY(cuda::attention_prefill(r.skip_q ? reinterpret_cast<const bf16*>(qkv) : q, L.k_cache + off,
                                         L.v_cache + off, attn, T, pos0, L.H, L.Hkv, Dh, S, stream, rope));
      }
      mark("attention");
      DUET_TRY(begin_partial_sum(T));
      if (merge_in_out) {
        DUET_TRY(linear(nullptr, GemvInput::AttentionPartials, nullptr, L.wo, D, L.H * Dh, T, x, GemvOutput::AddF32,
                        nullptr, &partials));
      } else {
        DUET_TRY(linear(attn, GemvInput::Bf16, nullptr, L.wo, D, L.H * Dh, T, x, GemvOutput::AddF32));
      }
      mark("gemm_out");
      DUET_TRY(end_partial_sum(T));
      DUET_TRY(linear(x, GemvInput::F32RmsNorm, nullptr, L.wgu, 2 * L.F, D, T, h, GemvOutput::SiluMulBf16));
      mark("silu_mul");
      DUET_TRY(begin_partial_sum(T));  // after gate/up has read x
      DUET_TRY(linear(h, GemvInput::Bf16, nullptr, L.wdown, D, L.F, T, x, GemvOutput::AddF32));
      mark("gemm_down");
      DUET_TRY(end_partial_sum(T));
    }
    return ok_status();
  }

  // logits[0..rows) = output(norm(x[row0..row0+rows))).
  Status enqueue_logits(int row0, int rows) {
    return linear(x + static_cast<int64_t>(row0) * config.dim, cuda::GemvInput::F32RmsNorm, out_norm, out_w,
                  config.vocab_size, config.dim, rows, logits, cuda::GemvOutput::StoreF32);
  }

  Status enqueue_decode(int B) {
    DUET_TRY(enqueue_layers(B, true, 0, 0));
    return enqueue_logits(0, B);
  }

  // Runs the decode step for B rows already staged in d_tok/d_pos/d_slot.
  Status launch_decode(int B) {
    if (!opt.use_graphs) return enqueue_decode(B);
    auto it = graphs.find(B);
    if (it == graphs.end()) {
      cudaGraph_t graph = nullptr;
      DUET_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
      const Status captured = enqueue_decode(B);
      const cudaError_t end = cudaStreamEndCapture(stream, &graph);
      if (!captured.ok()) {
        if (graph) cudaGraphDestroy(graph);
        return captured;
      }
      DUET_CUDA_TRY(end);
      cudaGraphExec_t exec = nullptr;
      const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      DUET_CUDA_TRY(inst);
      it = graphs.emplace(B, exec).first;
    }
    DUET_CUDA_TRY(cudaGraphLaunch(it->second, stream));
    return ok_status();
  }

  // Runs tokens[0..n) of sequence seq at its next positions through every layer and appends their K/V;
  // x then holds their final hidden rows (for enqueue_logits).
  Status enqueue_prompt_chunk(int seq, const int32_t* tokens, int n) {
    const int pos0 = lengths[seq];
    std::vector<int32_t> tok(tokens, tokens + n), pos(n), slot(n, seq);
    for (int t = 0; t < n; ++t) pos[t] = pos0 + t;
    DUET_TRY(stage_rows(tok, pos, slot));
    DUET_TRY(enqueue_layers(n, false, seq, pos0));
    lengths[seq] += n;
    return ok_status();
  }

  // Bench prompt: T synthetic tokens of sequence 0 at positions 0..T-1, staged for enqueue_layers.
  Status stage_bench_prompt(int T, const char* caller) {
    if (T < 1 || T > opt.max_prefill || T > opt.max_context) {
      return make_error(caller, ": ", T, " tokens exceed the prefill buffer (", opt.max_prefill, ")");
    }
    std::vector<int32_t> tok(T), pos(T), slot(T, 0);
    for (int t = 0; t < T; ++t) {
      tok[t] = static_cast<int32_t>((104729ll * (t + 1)) % config.vocab_size);
      pos[t] = t;
    }
    return stage_rows(tok, pos, slot);
  }

  // Checks a decode step of B distinct sequences seqs[0..B) and stages its rows (launch_decode runs it).
  Status stage_decode(const int32_t* seqs, const int32_t* tokens, int B) {
    const int V = config.vocab_size;
    if (B < 1 || B > opt.max_batch) return make_error("decode: batch ", B, " out of range [1, ", opt.max_batch, "]");
    std::vector<int32_t> tok(tokens, tokens + B), pos(B), slot(seqs, seqs + B);
    for (int b = 0; b < B; ++b) {
      if (tokens[b] < 0 || tokens[b] >= V) return make_error("token id ", tokens[b], " is outside the vocabulary [0, ", V, ")");
      if (slot[b] < 0 || slot[b] >= opt.max_batch) {
        return make_error("sequence ", slot[b], " out of range [0, ", opt.max_batch, ")");
      }
      if (lengths[slot[b]] + 1 > opt.max_context) {
        return make_error("sequence ", slot[b], " is full (", opt.max_context, " positions); raise --ctx");
      }
      pos[b] = lengths[slot[b]];
    }
    return stage_rows(tok, pos, slot);
  }

  Status stage_rows(const std::vector<int32_t>& tok, const std::vector<int32_t>& pos,
                    const std::vector<int32_t>& slot) {
    const size_t n = tok.size() * sizeof(int32_t);
    DUET_CUDA_TRY(cudaMemcpyAsync(d_tok, tok.data(), n, cudaMemcpyHostToDevice, stream));
    DUET_CUDA_TRY(cudaMemcpyAsync(d_pos, pos.data(), n, cudaMemcpyHostToDevice, stream));
    DUET_CUDA_TRY(cudaMemcpyAsync(d_slot, slot.data(), n, cudaMemcpyHostToDevice, stream));
    return ok_status();
  }
};

CudaModel::CudaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaModel::~CudaModel() = default;

namespace {

std::vector<uint16_t> to_bf16(const float* src, int64_t n) {
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(src[i]);
  return out;
}

// The device pairs RoPE dims as (2i, 2i+1) (RopeQkvArgs), so that one gemv warp's two adjacent output
// rows form a pair. Source index of device dim d within a head of `head_dim` dims: a half-split checkpoint
// pairs (i, i + Dh/2); head_dim 0 means no reordering (v rows, interleaved checkpoints).
int64_t rope_source_index(int64_t d, int head_dim) {
  if (head_dim == 0) return d;
  const int64_t head = d / head_dim, r = d % head_dim;
  return head * head_dim + (r % 2 == 0 ? r / 2 : r / 2 + head_dim / 2);
}

std::vector<float> in_rope_order(const std::vector<float>& v, int head_dim) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[rope_source_index(static_cast<int64_t>(i), head_dim)];
  return out;
}

// Rows of `m` (reordered by rope_source_index) with column j scaled by gain[j] (RMSNorm gain folding),
// appended as bf16 to `out`.
void append_folded(const Matrix& m, const std::vector<float>& gain, std::vector<uint16_t>& out, int head_dim = 0) {
  for (int64_t r = 0; r < m.rows; ++r) {
    const float* row = m.row(rope_source_index(r, head_dim));
    for (int64_t j = 0; j < m.cols; ++j) out.push_back(f32_to_bf16(row[j] * (gain.empty() ? 1.0f : gain[j])));
  }
}

}  // namespace

Result<std::unique_ptr<CudaModel>> CudaModel::create(const ModelWeights& w, const CudaModelOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->config = w.config;
  impl->opt = options;
  const ModelConfig& c = w.config;
  const int D = c.dim, Dh = c.head_dim;
  std::vector<LayerShape> shapes;
  for (const LayerWeights& lw : w.layers) shapes.push_back({lw.n_heads, lw.n_kv_heads, lw.ffn_dim});
  impl->layers.resize(w.layers.size());
  int64_t bytes = 0;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    DeviceLayer& L = impl->layers[l];
    L.H = lw.n_heads;
    L.Hkv = lw.n_kv_heads;
    L.F = lw.ffn_dim;
    std::vector<uint16_t> qkv;
    qkv.reserve(static_cast<size_t>(L.H + 2 * L.Hkv) * Dh * D);
    const int rope_dh = c.rope_style == RopeStyle::HalfSplit ? Dh : 0;
    append_folded(lw.attn_q, lw.attn_norm, qkv, rope_dh);
    append_folded(lw.attn_k, lw.attn_norm, qkv, rope_dh);
    append_folded(lw.attn_v, lw.attn_norm, qkv);
    DUET_TRY(impl->upload(qkv, &L.wqkv));
    if (!lw.attn_q_bias.empty() || !lw.attn_k_bias.empty() || !lw.attn_v_bias.empty()) {
      std::vector<float> bias;
      auto add = [&](const std::vector<float>& b, int n, int head_dim) {
        if (b.empty()) bias.insert(bias.end(), n, 0.0f);
        else for (float v : in_rope_order(b, head_dim)) bias.push_back(v);
      };
      add(lw.attn_q_bias, L.H * Dh, rope_dh);
      add(lw.attn_k_bias, L.Hkv * Dh, rope_dh);
      add(lw.attn_v_bias, L.Hkv * Dh, 0);
      DUET_TRY(impl->upload(bias, &L.bias));
    }
    if (!lw.attn_q_norm.empty()) {
      DUET_TRY(impl->upload(in_rope_order(lw.attn_q_norm.data, rope_dh), &L.q_norm));
      DUET_TRY(impl->upload(in_rope_order(lw.attn_k_norm.data, rope_dh), &L.k_norm));
    }
    DUET_TRY(impl->upload(to_bf16(lw.attn_out.data.data(), static_cast<int64_t>(lw.attn_out.data.size())), &L.wo));
    std::vector<uint16_t> gu;
    gu.reserve(static_cast<size_t>(2) * L.F * D);
    for (int i = 0; i < L.F; ++i) {
      for (const Matrix* m : {&lw.ffn_gate, &lw.ffn_up}) {
        const float* row = m->row(i);
        for (int j = 0; j < D; ++j) gu.push_back(f32_to_bf16(row[j] * (lw.ffn_norm.empty() ? 1.0f : lw.ffn_norm[j])));
      }
    }
    DUET_TRY(impl->upload(gu, &L.wgu));
    DUET_TRY(impl->upload(to_bf16(lw.ffn_down.data.data(), static_cast<int64_t>(lw.ffn_down.data.size())), &L.wdown));
    bytes += 2 * (static_cast<int64_t>(qkv.size()) + static_cast<int64_t>(gu.size()) +
                  static_cast<int64_t>(lw.attn_out.data.size() + lw.ffn_down.data.size()));
  }
  DUET_TRY(impl->upload(to_bf16(w.token_embd.data.data(), static_cast<int64_t>(w.token_embd.data.size())), &impl->embd));
  if (w.output.empty()) {
    impl->out_w = impl->embd;
  } else {
    DUET_TRY(impl->upload(to_bf16(w.output.data.data(), static_cast<int64_t>(w.output.data.size())), &impl->out_w));
  }
  bytes += 2 * static_cast<int64_t>(c.vocab_size) * D;
  std::vector<float> out_norm = w.output_norm;
  if (out_norm.empty()) out_norm.assign(D, 1.0f);
  DUET_TRY(impl->upload(out_norm, &impl->out_norm));
  impl->weight_bytes = bytes;
  DUET_TRY(impl->init_runtime(shapes));
  return std::unique_ptr<CudaModel>(new CudaModel(std::move(impl)));
}

Result<std::unique_ptr<CudaModel>> CudaModel::create_random(const ModelConfig& config, const LpPlan& plan,
                                                            const CudaModelOptions& options, uint64_t seed) {
  DUET_TRY(validate_lp_plan(plan, config.n_layers));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->opt = options;
  const ModelConfig& c = config;
  const int D = c.dim, Dh = c.head_dim;
  const std::vector<LayerShape> shapes = layer_shapes(c, plan);
  impl->layers.resize(shapes.size());
  cudaStream_t s = nullptr;  // legacy stream; init_runtime synchronises afterwards
  uint64_t tag = seed * 1000003ull;
  int64_t bytes = 0;
  auto fill = [&](bf16** p, int64_t n, float scale) -> Status {
    DUET_TRY(impl->alloc(p, n));
    bytes += 2 * n;
    return cuda::fill_uniform(*p, n, ++tag, scale, 0.0f, s);
  };
  auto fill_f32 = [&](float** p, int64_t n, float scale, float offset) -> Status {
    DUET_TRY(impl->alloc(p, n));
    return cuda::fill_uniform_f32(*p, n, ++tag, scale, offset, s);
  };
  for (size_t l = 0; l < shapes.size(); ++l) {
    DeviceLayer& L = impl->layers[l];
    L.H = shapes[l].H;
    L.Hkv = shapes[l].Hkv;
    L.F = shapes[l].F;
    const int64_t nqkv = static_cast<int64_t>(L.H + 2 * L.Hkv) * Dh;
    DUET_TRY(fill(&L.wqkv, nqkv * D, 1.0f / std::sqrt(static_cast<float>(D))));
    if (c.qkv_bias) DUET_TRY(fill_f32(&L.bias, nqkv, 0.02f, 0.0f));
    if (c.qk_norm) {
      DUET_TRY(fill_f32(&L.q_norm, static_cast<int64_t>(L.H) * Dh, 0.1f, 1.0f));
      DUET_TRY(fill_f32(&L.k_norm, static_cast<int64_t>(L.Hkv) * Dh, 0.1f, 1.0f));
    }
    DUET_TRY(fill(&L.wo, static_cast<int64_t>(D) * L.H * Dh, 1.0f / std::sqrt(static_cast<float>(L.H * Dh))));
    DUET_TRY(fill(&L.wgu, static_cast<int64_t>(2) * L.F * D, 1.0f / std::sqrt(static_cast<float>(D))));
    DUET_TRY(fill(&L.wdown, static_cast<int64_t>(D) * L.F, 1.0f / std::sqrt(static_cast<float>(L.F))));
  }
  DUET_TRY(fill(&impl->embd, static_cast<int64_t>(c.vocab_size) * D, 1.0f));
  if (c.tied_embeddings) {
    impl->out_w = impl->embd;
  } else {
    DUET_TRY(fill(&impl->out_w, static_cast<int64_t>(c.vocab_size) * D, 1.0f / std::sqrt(static_cast<float>(D))));
  }
  DUET_TRY(fill_f32(&impl->out_norm, D, 0.0f, 1.0f));
  // A decode step reads the output matrix once and gathers only B rows of the embedding table.
  impl->weight_bytes = bytes - (c.tied_embeddings ? 0 : 2 * static_cast<int64_t>(c.vocab_size) * D);
  DUET_CUDA_TRY(cudaDeviceSynchronize());
  DUET_TRY(impl->init_runtime(shapes));
  return std::unique_ptr<CudaModel>(new CudaModel(std::move(impl)));
}

const ModelConfig& CudaModel::config() const { return impl_->config; }
int CudaModel::depth() const { return static_cast<int>(impl_->layers.size()); }
int CudaModel::max_batch() const { return impl_->opt.max_batch; }
int CudaModel::max_context() const { return impl_->opt.max_context; }
int CudaModel::length(int seq) const { return impl_->lengths.at(seq); }
void CudaModel::reset(int seq) { impl_->lengths.at(seq) = 0; }
void CudaModel::reset_all() { std::fill(impl_->lengths.begin(), impl_->lengths.end(), 0); }
int64_t CudaModel::weight_bytes() const { return impl_->weight_bytes; }
void* CudaModel::stream() const { return impl_->stream; }

Status CudaModel::set_communicator(Communicator* comm) {
  if (!impl_->graphs.empty()) return make_error("set_communicator: decode graphs were already captured without it");
  impl_->comm = comm;
  return ok_status();
}

Status CudaModel::set_length(int seq, int length) {
  if (seq < 0 || seq >= max_batch()) return make_error("sequence ", seq, " out of range [0, ", max_batch(), ")");
  if (length < 0 || length >= max_context()) {
    return make_error("length ", length, " out of range [0, ", max_context(), ")");
  }
  impl_->lengths[seq] = length;
  return ok_status();
}

Status CudaModel::prefill(int seq, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) {
  Impl& m = *impl_;
  const int V = m.config.vocab_size;
  if (seq < 0 || seq >= max_batch()) return make_error("sequence ", seq, " out of range [0, ", max_batch(), ")");
  if (T <= 0) return make_error("prefill: no tokens to run");
  if (m.lengths[seq] + T > max_context()) {
    return make_error(m.lengths[seq] + T, " tokens do not fit the context of ", max_context(), " positions (",
                      m.lengths[seq], " already used); raise --ctx or shorten the prompt");
  }
  for (int t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= V) return make_error("token id ", tokens[t], " is outside the vocabulary [0, ", V, ")");
  }
  logits.assign(static_cast<size_t>(mode == LogitsMode::All ? T : 1) * V, 0.0f);
  for (int start = 0; start < T; start += m.opt.max_prefill) {
    const int n = std::min(m.opt.max_prefill, T - start);
    DUET_TRY(m.enqueue_prompt_chunk(seq, tokens + start, n));
    const bool last_chunk = start + n == T;
    if (mode == LogitsMode::All || last_chunk) {
      const int first = mode == LogitsMode::All ? 0 : n - 1;
      for (int r = first; r < n; r += m.logit_rows_cap) {
        const int rows = std::min(m.logit_rows_cap, n - r);
        DUET_TRY(m.enqueue_logits(r, rows));
        float* dst = logits.data() + static_cast<size_t>(mode == LogitsMode::All ? start + r : 0) * V;
        DUET_CUDA_TRY(cudaMemcpyAsync(dst, m.logits, static_cast<size_t>(rows) * V * 4, cudaMemcpyDeviceToHost,
                                      m.stream));
      }
    }
  }
  DUET_CUDA_TRY(cudaStreamSynchronize(m.stream));
  return ok_status();
}

Status CudaModel::score(int seq, const int32_t* tokens, int T, float* log_probs, int32_t* argmax) {
  Impl& m = *impl_;
  if (T < 2) return make_error("score: a sequence needs at least 2 tokens, got ", T);
  reset(seq);
  if (T - 1 > max_context()) return make_error(T, " tokens do not fit the context of ", max_context(), " positions");
  for (int t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= m.config.vocab_size) {
      return make_error("token id ", tokens[t], " is outside the vocabulary [0, ", m.config.vocab_size, ")");
    }
  }
  // Row t of the logits predicts token t+1: targets are the tokens shifted by one.
  int32_t* targets = nullptr;
  float* dev_log_probs = nullptr;
  int32_t* dev_argmax = nullptr;
  DUET_CUDA_TRY(cudaMallocAsync(&targets, T * sizeof(int32_t), m.stream));
  DUET_CUDA_TRY(cudaMallocAsync(&dev_log_probs, T * sizeof(float), m.stream));
  DUET_CUDA_TRY(cudaMallocAsync(&dev_argmax, T * sizeof(int32_t), m.stream));
  DUET_CUDA_TRY(cudaMemcpyAsync(targets, tokens + 1, (T - 1) * sizeof(int32_t), cudaMemcpyHostToDevice, m.stream));
  // The last token predicts nothing, so only tokens [0, T-1) run.
  const int rows_to_score = T - 1;
  for (int start = 0; start < rows_to_score; start += m.opt.max_prefill) {
    const int n = std::min(m.opt.max_prefill, rows_to_score - start);
    DUET_TRY(m.enqueue_prompt_chunk(seq, tokens + start, n));
    for (int r = 0; r < n; r += m.logit_rows_cap) {
      const int rows = std::min(m.logit_rows_cap, n - r);
      DUET_TRY(m.enqueue_logits(r, rows));
      DUET_TRY(cuda::token_log_probs(m.logits, rows, m.config.vocab_size, targets + start + r,
                                     dev_log_probs + start + r, dev_argmax + start + r, m.stream));
    }
  }
  DUET_CUDA_TRY(cudaMemcpyAsync(log_probs, dev_log_probs, (T - 1) * sizeof(float), cudaMemcpyDeviceToHost, m.stream));
  DUET_CUDA_TRY(cudaMemcpyAsync(argmax, dev_argmax, (T - 1) * sizeof(int32_t), cudaMemcpyDeviceToHost, m.stream));
  DUET_CUDA_TRY(cudaFreeAsync(targets, m.stream));
  DUET_CUDA_TRY(cudaFreeAsync(dev_log_probs, m.stream));
  DUET_CUDA_TRY(cudaFreeAsync(dev_argmax, m.stream));
  DUET_CUDA_TRY(cudaStreamSynchronize(m.stream));
  reset(seq);
  return ok_status();
}

Status CudaModel::decode(const int32_t* tokens, int B, std::vector<float>& logits) {
  std::vector<int32_t> seqs(std::max(B, 0));
  for (int b = 0; b < B; ++b) seqs[b] = b;
  return decode_sequences(seqs.data(), tokens, B, logits);
}

Status CudaModel::decode_sequences(const int32_t* seqs, const int32_t* tokens, int B, std::vector<float>& logits) {
  Impl& m = *impl_;
  DUET_TRY(m.stage_decode(seqs, tokens, B));
  DUET_TRY(m.launch_decode(B));
  logits.resize(static_cast<size_t>(B) * m.config.vocab_size);
  DUET_CUDA_TRY(cudaMemcpyAsync(logits.data(), m.logits, logits.size() * 4, cudaMemcpyDeviceToHost, m.stream));
  DUET_CUDA_TRY(cudaStreamSynchronize(m.stream));
  for (int b = 0; b < B; ++b) ++m.lengths[seqs[b]];
  return ok_status();
}

Status CudaModel::decode_select(const int32_t* seqs, const int32_t* tokens, int B, const int32_t* top, float* values,
                                int32_t* ids, float* rows) {
  Impl& m = *impl_;
  const int V = m.config.vocab_size;
  bool any_top = false;
  for (int b = 0; b < B; ++b) {
    if (top[b] < 0 || top[b] > kMaxSelect) return make_error("decode: ", top[b], " candidates asked, at most ", kMaxSelect);
    any_top = any_top || top[b] > 0;
  }
  DUET_TRY(m.stage_decode(seqs, tokens, B));
  DUET_TRY(m.launch_decode(B));
  if (any_top) {
    DUET_CUDA_TRY(cudaMemcpyAsync(m.d_top, top, B * sizeof(int32_t), cudaMemcpyHostToDevice, m.stream));
    DUET_TRY(cuda::row_top_k(m.logits, B, V, m.d_top, kMaxSelect, m.d_top_values, m.d_top_ids, m.stream));
    const size_t n = static_cast<size_t>(B) * kMaxSelect;
    DUET_CUDA_TRY(cudaMemcpyAsync(values, m.d_top_values, n * sizeof(float), cudaMemcpyDeviceToHost, m.stream));
    DUET_CUDA_TRY(cudaMemcpyAsync(ids, m.d_top_ids, n * sizeof(int32_t), cudaMemcpyDeviceToHost, m.stream));
  }
  for (int b = 0; b < B; ++b) {
    if (top[b] > 0) continue;
    const size_t at = static_cast<size_t>(b) * V;
    DUET_CUDA_TRY(cudaMemcpyAsync(rows + at, m.logits + at, V * sizeof(float), cudaMemcpyDeviceToHost, m.stream));
  }
  DUET_CUDA_TRY(cudaStreamSynchronize(m.stream));
  for (int b = 0; b < B; ++b) ++m.lengths[seqs[b]];
  return ok_status();
}

Result<double> CudaModel::time_decode(int B, int warmup, int steps) {
  Impl& m = *impl_;
  if (B < 1 || B > max_batch()) return make_error("time_decode: batch ", B, " out of range [1, ", max_batch(), "]");
  std::vector<int32_t> tok(B), pos(B), slot(B);
  for (int b = 0; b < B; ++b) {
    tok[b] = static_cast<int32_t>((7919ll * (b + 1)) % m.config.vocab_size);
    pos[b] = m.lengths[b];
    slot[b] = b;
  }
  DUET_TRY(m.stage_rows(tok, pos, slot));
  return mean_device_ms(m.stream, warmup, steps, [&] { return m.launch_decode(B); });
}

Result<double> CudaModel::time_prefill(int T, int warmup, int reps) {
  Impl& m = *impl_;
  DUET_TRY(m.stage_bench_prompt(T, "time_prefill"));
  return mean_device_ms(m.stream, warmup, reps, [&]() -> Status {
    DUET_TRY(m.enqueue_layers(T, false, 0, 0));
    return m.enqueue_logits(T - 1, 1);
  });
}

Result<std::vector<std::pair<std::string, double>>> CudaModel::prefill_breakdown(int T) {
  Impl& m = *impl_;
  DUET_TRY(m.stage_bench_prompt(T, "prefill_breakdown"));
  m.prof_on = true;
  m.mark("start");
  const Status st = m.enqueue_layers(T, false, 0, 0);
  const Status st_logits = st.ok() ? m.enqueue_logits(T - 1, 1) : ok_status();
  m.mark("logits");
  m.prof_on = false;
  const cudaError_t sync = cudaStreamSynchronize(m.stream);
  std::vector<std::pair<std::string, double>> out;  // label -> ms, in first-seen order
  for (size_t i = 1; i < m.prof_marks.size(); ++i) {
    float t = 0;
    cudaEventElapsedTime(&t, m.prof_marks[i - 1].second, m.prof_marks[i].second);
    const std::string& label = m.prof_marks[i].first;
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == label; });
    if (it == out.end()) out.emplace_back(label, t); else it->second += t;
  }
  for (auto& [label, e] : m.prof_marks) cudaEventDestroy(e);
  m.prof_marks.clear();
  DUET_TRY(st);
  DUET_TRY(st_logits);
  DUET_CUDA_TRY(sync);
  return out;
}

double CudaModel::decode_step_bytes(int B, int context) const {
  const Impl& m = *impl_;
  const ModelConfig& c = m.config;
  double kv = 0;
  for (const DeviceLayer& L : m.layers) kv += 2.0 * L.Hkv * c.head_dim * 2.0 * (context + 2);  // read ctx+1, write 1
  return static_cast<double>(m.weight_bytes) + 2.0 * B * c.dim + B * kv;
}

double CudaModel::prefill_flops(int T) const {
  const Impl& m = *impl_;
  const ModelConfig& c = m.config;
  double flops = 2.0 * c.vocab_size * c.dim;  // logits of the last token
  for (const DeviceLayer& L : m.layers) {
    const double params = static_cast<double>(c.dim) * (L.H + 2 * L.Hkv) * c.head_dim +
                          static_cast<double>(c.dim) * L.H * c.head_dim + 3.0 * c.dim * L.F;
    flops += 2.0 * params * T + 4.0 * L.H * c.head_dim * (static_cast<double>(T) * (T + 1) / 2);
  }
  return flops;
}

Result<double> measure_copy_bandwidth(int64_t bytes) {
  void *src = nullptr, *dst = nullptr;
  DUET_CUDA_TRY(cudaMalloc(&src, bytes));
  const cudaError_t e = cudaMalloc(&dst, bytes);
  if (e != cudaSuccess) {
    cudaFree(src);
    DUET_CUDA_TRY(e);
  }
  DUET_CUDA_TRY(cudaMemset(src, 1, bytes));
  const int reps = 10;
  const Result<double> ms = mean_device_ms(nullptr, 3, reps, [&]() -> Status {
    DUET_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr));
    return ok_status();
  });
  cudaFree(src);
  cudaFree(dst);
  if (!ms.ok()) return ms;
  return 2.0 * static_cast<double>(bytes) / (ms.value() * 1e-3);
}

std::string cuda_device_name() {
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "unknown";
  return prop.name;
}

int cuda_device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

Status cuda_set_device(int device) {
  DUET_CUDA_TRY(cudaSetDevice(device));
  return ok_status();
}

}  // namespace duet
