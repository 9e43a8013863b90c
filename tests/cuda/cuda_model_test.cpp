// CUDA backend against the CPU reference (CpuModel) and, when its files are
// present, against PyTorch/transformers (tools/gpu/hf_reference.py).
//
// Weights are rounded to bf16 before both backends see them, so what remains
// is the GPU's bf16 activations (fp32 accumulation, fp32 residual stream).
// Tolerances, one table:
//   kLogitsRelTol  ||gpu - ref|| / ||ref|| per logits row: bf16 activations
//                  (relative rounding 2^-9 per stored tensor, ~10 per layer).
//   kBatchRelTol   B <= 8 sequences together vs each alone: the same kernels
//                  except the flash-decoding chunk size (depends on B), so only
//                  summation order moves. It moves from run to run too: the
//                  split-K gemvs add their slices with atomics, and once a
//                  reordered fp32 sum flips one bf16 rounding the difference
//                  spreads to bf16 noise. Two identical runs differed by up to
//                  2.6e-3 on the H100 (bit-exact with the splits off); the
//                  mean error against the CPU is 4-6e-3. CudaDeterminism holds
//                  repeated runs to the same bound.
//   kBatchCublasRelTol  B > 8: cuBLAS instead of gemv, which also rounds the
//                  gate/up product to bf16 before SiLU (gemv fuses SiLU-mul in
//                  fp32): one more bf16 rounding per layer, measured 0.4-0.6%.
//   kTieFraction   greedy tokens must match the CPU's except at a near-tie: a CPU
//                  top-2 margin under this fraction of the logits' rms, which is
//                  where the GPU's per-logit error (max |gpu - cpu| measured at
//                  1.9-3.1% of the rms) can reorder the two.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_model.h"
#include "backends/cuda/cuda_model.h"
#include "core/half.h"
#include "model/loader.h"
#include "runtime/sampler.h"
#include "model/lp_merge.h"
#include "test_support.h"

namespace duet {
namespace {

constexpr double kLogitsRelTol = 3e-2;
constexpr double kBatchRelTol = 5e-3;
constexpr double kBatchCublasRelTol = 1e-2;
constexpr double kTieFraction = 0.03;

struct Case {
  std::string name;
  ModelConfig config;
  std::vector<int> lp_pairs;
};

ModelConfig base_config(Arch arch, int L, int D, int H, int Hkv, int Dh, int F, int V) {
  ModelConfig c;
  c.arch = arch;
  c.n_layers = L;
  c.dim = D;
  c.n_heads = H;
  c.n_kv_heads = Hkv;
  c.head_dim = Dh;
  c.ffn_dim = F;
  c.vocab_size = V;
  c.max_context = 512;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  return c;
}

ModelConfig llama_gqa() {  // interleaved RoPE (GGUF llama), Llama-3 frequency factors, untied output
  ModelConfig c = base_config(Arch::Llama, 4, 256, 4, 2, 64, 688, 1000);
  c.rope_style = RopeStyle::Interleaved;
  c.rope_theta = 500000.0f;
  c.rope_freq_factors = llama3_rope_freq_factors(64, c.rope_theta, 8.0f, 1.0f, 4.0f, 64);
  return c;
}
ModelConfig qwen2_bias() {  // QKV bias, head_dim 128, GQA group 3, tied embeddings
  ModelConfig c = base_config(Arch::Qwen2, 4, 384, 3, 1, 128, 1024, 1002);
  c.qkv_bias = true;
  c.tied_embeddings = true;
  c.rms_eps = 1e-6f;
  return c;
}
ModelConfig qwen3_qk_norm() {  // per-head q/k RMSNorm, H*Dh != D
  ModelConfig c = base_config(Arch::Qwen3, 4, 256, 4, 2, 128, 512, 998);
  c.qk_norm = true;
  return c;
}
ModelConfig smollm2_shape() {  // SmolLM2-135M's widths (D 576, 9/3 heads of 64, F 1536, V 49152), 4 layers
  ModelConfig c = base_config(Arch::Llama, 4, 576, 9, 3, 64, 1536, 49152);
  c.tied_embeddings = true;
  c.rope_theta = 100000.0f;
  return c;
}

// Every projection past gemv_latency_bound (8 MiB; QKV 28 MB, out 9.5 MB, down 10 MB) with GQA group 1: the
// large-layer decode paths of llama2-7b (RoPE in a large QKV gemv's epilogue, out/down split K to fill the
// chip, wide attention with the last-block chunk merge).
ModelConfig large_mha() { return base_config(Arch::Llama, 2, 2176, 17, 17, 128, 2304, 1000); }
// A large layer (QKV 12.6 MB) with GQA group 4: the narrow decode attention without the small-layer prefetch.
ModelConfig large_gqa() { return base_config(Arch::Llama, 2, 2048, 16, 4, 128, 2304, 1000); }
ModelConfig long_ffn() {  // F > 24576: the down projection's decode gemv splits K (staged input over 48 KB)
  return base_config(Arch::Llama, 2, 128, 2, 1, 64, 25600, 500);
}

ModelWeights bf16_weights(const Case& c, uint64_t seed) {
  ModelWeights w = test::rounded_to_bf16(test::random_weights(c.config, seed));
  LpPlan plan;
  plan.pair_starts = c.lp_pairs;
  Result<ModelWeights> merged = apply_lp_plan(std::move(w), plan);
  EXPECT_TRUE(merged.ok()) << merged.message();
  return std::move(merged).value();
}

double rel_l2(const float* a, const float* ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    if (std::isnan(a[i])) return INFINITY;
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}


// The reference logits' top-2 margin as a fraction of their rms: under kTieFraction is a near-tie.
double top2_margin_over_rms(std::vector<float> logits) {
  double ss = 0;
  for (float v : logits) ss += static_cast<double>(v) * v;
  std::partial_sort(logits.begin(), logits.begin() + 2, logits.end(), std::greater<float>());
  return (logits[0] - logits[1]) / std::sqrt(ss / static_cast<double>(logits.size()));
}

std::vector<int32_t> prompt_tokens(int n, int V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % V);
  return t;
}

std::unique_ptr<CudaModel> make_cuda(const ModelWeights& w, int max_batch, int max_context, int max_prefill) {
  CudaModelOptions o;
  o.max_batch = max_batch;
  o.max_context = max_context;
  o.max_prefill = max_prefill;
  Result<std::unique_ptr<CudaModel>> m = CudaModel::create(w, o);
  EXPECT_TRUE(m.ok()) << m.message();
  return m.ok() ? std::move(m).value() : nullptr;
}

class CudaVsCpu : public ::testing::TestWithParam<Case> {};

// Prefill (all rows' logits) then greedy decode steps, GPU vs CPU, with and without LP.
TEST_P(CudaVsCpu, LogitsMatchCpu) {
  const Case& c = GetParam();
  const ModelWeights w = bf16_weights(c, 7);
  const int V = c.config.vocab_size;
  for (int max_prefill : {64, 8}) {  // 8: a 19-token prompt runs as 3 chunks (attention at pos0 > 0)
    SCOPED_TRACE("max_prefill=" + std::to_string(max_prefill));
    CpuModel cpu(w, 64);
    KvCache cache = cpu.new_cache(64);
    auto gpu = make_cuda(w, 1, 64, max_prefill);
    ASSERT_TRUE(gpu);
    const std::vector<int32_t> prompt = prompt_tokens(19, V, 11);
    std::vector<float> ref, out;
    ASSERT_TRUE(cpu.forward(prompt.data(), 19, cache, LogitsMode::All, ref).ok());
    const Status s = gpu->prefill(0, prompt.data(), 19, LogitsMode::All, out);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(out.size(), ref.size());
    for (int t = 0; t < 19; ++t) {
      const double e = rel_l2(out.data() + t * V, ref.data() + t * V, V);
      EXPECT_LT(e, kLogitsRelTol) << "prefill row " << t;
    }
    int32_t token = argmax(ref.data() + 18 * V, V);
    for (int step = 0; step < 6; ++step) {
      ASSERT_TRUE(cpu.forward(&token, 1, cache, LogitsMode::Last, ref).ok());
      const Status d = gpu->decode(&token, 1, out);
      ASSERT_TRUE(d.ok()) << d.message();
      const double e = rel_l2(out.data(), ref.data(), V);
      EXPECT_LT(e, kLogitsRelTol) << "decode step " << step;
      token = argmax(ref.data(), V);
    }
  }
}

// Greedy generation from three prompts: at every step the GPU's top token is the CPU's, except at a
// near-tie (kTieFraction). Both then continue from the CPU's token, so a near-tie does not end the prompt.
TEST_P(CudaVsCpu, GreedyTokensMatchCpu) {
  const Case& c = GetParam();
  const ModelWeights w = bf16_weights(c, 8);
  const int V = c.config.vocab_size;
  auto gpu = make_cuda(w, 1, 96, 64);
  ASSERT_TRUE(gpu);
  CpuModel cpu(w, 96);
  int near_ties = 0;
  for (int p = 0; p < 3; ++p) {
    const std::vector<int32_t> prompt = prompt_tokens(5 + 7 * p, V, 100 + p);
    KvCache cache = cpu.new_cache(96);
    gpu->reset(0);
    std::vector<float> ref, out;
    ASSERT_TRUE(cpu.forward(prompt.data(), static_cast<int>(prompt.size()), cache, LogitsMode::Last, ref).ok());
    ASSERT_TRUE(gpu->prefill(0, prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, out).ok());
    for (int step = 0; step < 12; ++step) {
      const int32_t a = argmax(ref.data(), V), b = argmax(out.data(), V);
      if (a != b) {
        EXPECT_LT(top2_margin_over_rms(ref), kTieFraction) << "prompt " << p << " step " << step << ": cpu token "
                                                            << a << ", gpu token " << b;
        ++near_ties;
      }
      ASSERT_TRUE(cpu.forward(&a, 1, cache, LogitsMode::Last, ref).ok());
      ASSERT_TRUE(gpu->decode(&a, 1, out).ok());
    }
  }
  if (near_ties > 0) std::printf("  %s: %d of 36 steps at near-ties\n", c.name.c_str(), near_ties);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaVsCpu,
    ::testing::Values(Case{"llama_gqa", llama_gqa(), {}}, Case{"llama_gqa_lp1", llama_gqa(), {1}},
                      Case{"qwen2_bias", qwen2_bias(), {}}, Case{"qwen2_bias_lp0_2", qwen2_bias(), {0, 2}},
                      Case{"qwen3_qk_norm", qwen3_qk_norm(), {}}, Case{"qwen3_qk_norm_lp1", qwen3_qk_norm(), {1}},
                      Case{"smollm2_shape", smollm2_shape(), {}}, Case{"smollm2_shape_lp1", smollm2_shape(), {1}},
                      Case{"long_ffn", long_ffn(), {}}, Case{"large_mha", large_mha(), {}},
                      Case{"large_mha_lp0", large_mha(), {0}}, Case{"large_gqa", large_gqa(), {}}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// Decode over several flash-decoding chunks, against the CPU (the other tests' contexts fit in one chunk):
// a 300-token prompt spans 5 chunks of 64 keys, out of 16 (max_context 1024) or 32 (2048) per KV head.
// smollm2_shape (small layers: K/V prefetch, merge kernel), large_mha (wide kernel, last-block merge) and
// large_gqa (narrow kernel, merge kernel), the last two with the first round of keys loaded before the wait.
TEST(CudaDecode, LongContextMatchesCpu) {
  for (const Case& c : {Case{"smollm2_shape", smollm2_shape(), {}}, Case{"large_mha", large_mha(), {}},
                        Case{"large_gqa", large_gqa(), {}}}) {
    SCOPED_TRACE(c.name);
    const ModelWeights w = bf16_weights(c, 12);
    const int V = c.config.vocab_size, n = 300;
    const std::vector<int32_t> prompt = prompt_tokens(n, V, 77);
    CpuModel cpu(w, 2048);
    KvCache cache = cpu.new_cache(2048);
    std::vector<float> ref, out;
    ASSERT_TRUE(cpu.forward(prompt.data(), n, cache, LogitsMode::Last, ref).ok());
    std::vector<std::vector<float>> ref_steps;
    std::vector<int32_t> ref_tokens;
    for (int step = 0; step < 4; ++step) {
      const int32_t token = argmax(ref.data(), V);
      ref_tokens.push_back(token);
      ASSERT_TRUE(cpu.forward(&token, 1, cache, LogitsMode::Last, ref).ok());
      ref_steps.push_back(ref);
    }
    for (int max_context : {1024, 2048}) {
      SCOPED_TRACE("max_context=" + std::to_string(max_context));
      auto gpu = make_cuda(w, 1, max_context, 512);
      ASSERT_TRUE(gpu);
      ASSERT_TRUE(gpu->prefill(0, prompt.data(), n, LogitsMode::Last, out).ok());
      for (int step = 0; step < 4; ++step) {
        const Status d = gpu->decode(&ref_tokens[step], 1, out);
        ASSERT_TRUE(d.ok()) << d.message();
        EXPECT_LT(rel_l2(out.data(), ref_steps[step].data(), V), kLogitsRelTol) << "decode step " << step;
      }
    }
  }
}

// B sequences decoded together (each at its own position) give each sequence what decoding it alone gives:
// gemv (B <= 8) and cuBLAS (B > 8) paths. The single model is fed the batch's tokens, so a near-tie
// (kTieFraction) that picks another top token does not change what the later steps compare.
TEST(CudaBatch, BatchMatchesSingleSequence) {
  for (const Case& c : {Case{"llama_gqa_lp1", llama_gqa(), {1}}, Case{"qwen2_bias", qwen2_bias(), {}},
                        Case{"large_mha", large_mha(), {}}}) {
    SCOPED_TRACE(c.name);
    const ModelWeights w = bf16_weights(c, 9);
    const int V = c.config.vocab_size;
    for (int B : {3, 12}) {
      SCOPED_TRACE("B=" + std::to_string(B));
      auto batched = make_cuda(w, B, 64, 64);
      auto single = make_cuda(w, 1, 64, 64);
      ASSERT_TRUE(batched && single);
      std::vector<std::vector<int32_t>> tokens(B);
      std::vector<int32_t> next(B);
      std::vector<float> logits;
      for (int b = 0; b < B; ++b) {
        const std::vector<int32_t> prompt = prompt_tokens(3 + 2 * b, V, 500 + b);  // different lengths
        ASSERT_TRUE(batched->prefill(b, prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, logits).ok());
        next[b] = argmax(logits.data(), V);
      }
      std::vector<std::vector<float>> batch_logits(B);
      for (int step = 0; step < 5; ++step) {
        ASSERT_TRUE(batched->decode(next.data(), B, logits).ok());
        for (int b = 0; b < B; ++b) {
          tokens[b].push_back(next[b]);
          batch_logits[b].insert(batch_logits[b].end(), logits.begin() + b * V, logits.begin() + (b + 1) * V);
          next[b] = argmax(logits.data() + b * V, V);
        }
      }
      const double bound = B <= 8 ? kBatchRelTol : kBatchCublasRelTol;
      for (int b = 0; b < B; ++b) {
        single->reset(0);
        const std::vector<int32_t> prompt = prompt_tokens(3 + 2 * b, V, 500 + b);
        ASSERT_TRUE(single->prefill(0, prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, logits).ok());
        for (int step = 0; step < 5; ++step) {
          const int32_t alone = argmax(logits.data(), V);
          if (alone != tokens[b][step]) {
            EXPECT_LT(top2_margin_over_rms(logits), kTieFraction)
                << "sequence " << b << " step " << step << ": alone " << alone << ", in the batch " << tokens[b][step];
          }
          ASSERT_TRUE(single->decode(&tokens[b][step], 1, logits).ok());
          EXPECT_LT(rel_l2(batch_logits[b].data() + step * V, logits.data(), V), bound)
              << "sequence " << b << " step " << step;
        }
      }
    }
  }
}

// Repeated runs of the same prompt and decode steps on one model stay within kBatchRelTol of the first run:
// the only run-to-run difference is the split-K gemvs' atomics order (a race would show as errors far
// above bf16 noise). Prompts of 1-8 tokens run on the gemv path with its splits, 12 on cuBLAS.
TEST(CudaDeterminism, RepeatedRunsWithinBatchTolerance) {
  for (const Case& c : {Case{"smollm2_shape", smollm2_shape(), {}}, Case{"large_mha", large_mha(), {}}}) {
    SCOPED_TRACE(c.name);
    const ModelWeights w = bf16_weights(c, 9);
    const int V = c.config.vocab_size;
    auto m = make_cuda(w, 1, 64, 64);
    ASSERT_TRUE(m);
    for (int T : {1, 5, 8, 12}) {
      SCOPED_TRACE("T=" + std::to_string(T));
      const std::vector<int32_t> prompt = prompt_tokens(T, V, 600 + T);
      std::vector<std::vector<float>> first;
      std::vector<int32_t> tokens;
      std::vector<float> logits;
      for (int rep = 0; rep < 5; ++rep) {
        m->reset(0);
        ASSERT_TRUE(m->prefill(0, prompt.data(), T, LogitsMode::Last, logits).ok());
        for (int step = 0; step <= 3; ++step) {
          if (rep == 0) {
            first.push_back(logits);
            tokens.push_back(argmax(logits.data(), V));
          } else {
            EXPECT_LT(rel_l2(logits.data(), first[step].data(), V), kBatchRelTol) << "run " << rep << " step " << step;
          }
          if (step < 3) ASSERT_TRUE(m->decode(&tokens[step], 1, logits).ok());
        }
      }
    }
  }
}

// Bad input comes back as an error, not a crash.
// The server's decode step (CudaBatchDecoder): any set of slots, in any order, while other slots are empty
// or mid-prompt; each sequence's logits as it alone would get them, and the other slots untouched.
TEST(CudaBatch, DecodeSequencesServesAnySlotSet) {
  const Case c{"llama_gqa_lp1", llama_gqa(), {1}};
  const ModelWeights w = bf16_weights(c, 21);
  const int V = c.config.vocab_size;
  auto server = make_cuda(w, 4, 64, 64);
  auto single = make_cuda(w, 1, 64, 64);
  ASSERT_TRUE(server && single);
  const std::vector<int32_t> slots = {3, 1};
  std::vector<std::vector<int32_t>> prompts = {prompt_tokens(5, V, 71), prompt_tokens(9, V, 72)};
  std::vector<int32_t> next(2);
  std::vector<float> logits;
  for (int b = 0; b < 2; ++b) {
    ASSERT_TRUE(server->prefill(slots[b], prompts[b].data(), static_cast<int>(prompts[b].size()), LogitsMode::Last,
                                logits).ok());
    next[b] = argmax(logits.data(), V);
  }
  const std::vector<int32_t> partial = prompt_tokens(4, V, 73);  // slot 2: a prompt half-way
  ASSERT_TRUE(server->prefill(2, partial.data(), 4, LogitsMode::Last, logits).ok());
  std::vector<std::vector<float>> got(2);
  std::vector<std::vector<int32_t>> fed(2);
  for (int step = 0; step < 4; ++step) {
    ASSERT_TRUE(server->decode_sequences(slots.data(), next.data(), 2, logits).ok());
    for (int b = 0; b < 2; ++b) {
      fed[b].push_back(next[b]);
      got[b].insert(got[b].end(), logits.begin() + b * V, logits.begin() + (b + 1) * V);
      next[b] = argmax(logits.data() + b * V, V);
    }
  }
  EXPECT_EQ(server->length(0), 0);
  EXPECT_EQ(server->length(2), 4);
  EXPECT_EQ(server->length(3), 5 + 4);
  EXPECT_EQ(server->length(1), 9 + 4);
  for (int b = 0; b < 2; ++b) {
    single->reset(0);
    ASSERT_TRUE(single->prefill(0, prompts[b].data(), static_cast<int>(prompts[b].size()), LogitsMode::Last, logits).ok());
    for (int step = 0; step < 4; ++step) {
      ASSERT_TRUE(single->decode(&fed[b][step], 1, logits).ok());
      EXPECT_LT(rel_l2(got[b].data() + static_cast<size_t>(step) * V, logits.data(), V), kBatchRelTol)
          << "slot " << slots[b] << " step " << step;
    }
  }
  const int32_t bad_slot = 4, token = 1;
  EXPECT_FALSE(server->decode_sequences(&bad_slot, &token, 1, logits).ok());
}

// decode_select against decode_sequences over the same steps: rows asking for candidates get the best logits
// of their row, rows asking for none get the row itself. Two runs of a step differ by split-K atomics
// (kBatchRelTol), so values are compared within that and ids only where the runner-up trails by more.
TEST(CudaBatch, DecodeSelectReturnsTheBestOfEachRow) {
  const Case c{"llama_gqa_lp1", llama_gqa(), {1}};
  const ModelWeights w = bf16_weights(c, 23);
  const int V = c.config.vocab_size;
  constexpr int K = CudaModel::kMaxSelect;
  auto selecting = make_cuda(w, 4, 64, 64);
  auto full = make_cuda(w, 4, 64, 64);
  ASSERT_TRUE(selecting && full);
  const std::vector<int32_t> slots = {2, 0, 3};
  const std::vector<int32_t> top = {1, 0, 17};
  std::vector<int32_t> next(3);
  std::vector<float> logits;
  for (int b = 0; b < 3; ++b) {
    const std::vector<int32_t> prompt = prompt_tokens(4 + 3 * b, V, 90 + b);
    for (CudaModel* m : {selecting.get(), full.get()}) {
      ASSERT_TRUE(m->prefill(slots[b], prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, logits).ok());
    }
    next[b] = argmax(logits.data(), V);
  }
  std::vector<float> values(3 * K), rows(3 * static_cast<size_t>(V), -1.0f);
  std::vector<int32_t> ids(3 * K);
  for (int step = 0; step < 3; ++step) {
    ASSERT_TRUE(selecting->decode_select(slots.data(), next.data(), 3, top.data(), values.data(), ids.data(),
                                         rows.data()).ok());
    ASSERT_TRUE(full->decode_sequences(slots.data(), next.data(), 3, logits).ok());
    for (int b = 0; b < 3; ++b) {
      const float* ref = logits.data() + static_cast<size_t>(b) * V;
      double rms = 0;
      for (int i = 0; i < V; ++i) rms += static_cast<double>(ref[i]) * ref[i];
      rms = std::sqrt(rms / V);
      const double tol = 4 * kBatchRelTol * rms;
      if (top[b] == 0) {
        EXPECT_LT(rel_l2(rows.data() + static_cast<size_t>(b) * V, ref, V), kBatchRelTol) << "step " << step;
        continue;
      }
      std::vector<float> want_v(top[b]);
      std::vector<int32_t> want_i(top[b]);
      select_top(ref, V, top[b], want_v.data(), want_i.data());
      for (int i = 0; i < top[b]; ++i) {
        EXPECT_NEAR(values[b * K + i], want_v[i], tol) << "step " << step << " row " << b << " rank " << i;
        EXPECT_NEAR(values[b * K + i], ref[ids[b * K + i]], tol) << "the value of the id beside it";
        const bool clear = i + 1 >= top[b] || want_v[i] - want_v[i + 1] > 2 * tol;
        if (clear && (i == 0 || want_v[i - 1] - want_v[i] > 2 * tol)) EXPECT_EQ(ids[b * K + i], want_i[i]);
      }
    }
    for (int b = 0; b < 3; ++b) next[b] = argmax(logits.data() + static_cast<size_t>(b) * V, V);
  }
  EXPECT_EQ(selecting->length(2), full->length(2));
  const int32_t too_many = K + 1;
  EXPECT_FALSE(selecting->decode_select(slots.data(), next.data(), 1, &too_many, values.data(), ids.data(),
                                        rows.data()).ok());
}

TEST(CudaErrors, RejectsBadInput) {
  const ModelWeights w = bf16_weights(Case{"llama", llama_gqa(), {}}, 3);
  auto gpu = make_cuda(w, 2, 16, 16);
  ASSERT_TRUE(gpu);
  std::vector<float> logits;
  const int32_t bad = 5000;
  EXPECT_FALSE(gpu->prefill(0, &bad, 1, LogitsMode::Last, logits).ok());
  const std::vector<int32_t> long_prompt(17, 1);
  EXPECT_FALSE(gpu->prefill(0, long_prompt.data(), 17, LogitsMode::Last, logits).ok());
  const int32_t two[3] = {1, 2, 3};
  EXPECT_FALSE(gpu->decode(two, 3, logits).ok());
  ModelConfig odd = llama_gqa();
  odd.head_dim = 32;
  odd.dim = 128;
  CudaModelOptions o;
  EXPECT_FALSE(CudaModel::create_random(odd, LpPlan{}, o, 1).ok());
}

// transformers on the GPU machine as the independent reference: tools/gpu/hf_reference.py
// writes a random HF checkpoint, its tokens and float32 logits; DUET_HF_REF names the directory.
TEST(CudaHf, MatchesTransformers) {
  const char* dir = std::getenv("DUET_HF_REF");
  if (!dir) GTEST_SKIP() << "DUET_HF_REF not set (run tools/gpu/hf_reference.py first)";
  for (const std::string sub : {"llama", "qwen2"}) {
    const std::string path = std::string(dir) + "/" + sub;
    std::ifstream tok_in(path + "/tokens.txt");
    if (!tok_in) continue;
    SCOPED_TRACE(sub);
    std::vector<int32_t> tokens;
    for (int32_t t; tok_in >> t;) tokens.push_back(t);
    Result<ModelWeights> w = load_weights(path);
    ASSERT_TRUE(w.ok()) << w.message();
    const int V = w->config.vocab_size, T = static_cast<int>(tokens.size());
    std::vector<float> ref(static_cast<size_t>(T) * V);
    std::ifstream lin(path + "/logits.f32", std::ios::binary);
    ASSERT_TRUE(lin.read(reinterpret_cast<char*>(ref.data()), ref.size() * 4)) << "logits.f32 short";
    auto gpu = make_cuda(*w, 1, T + 8, 64);
    ASSERT_TRUE(gpu);
    std::vector<float> out;
    ASSERT_TRUE(gpu->prefill(0, tokens.data(), T, LogitsMode::All, out).ok());
    int agree = 0;
    double worst = 0;
    for (int t = 0; t < T; ++t) {
      worst = std::max(worst, rel_l2(out.data() + t * V, ref.data() + t * V, V));
      agree += argmax(out.data() + t * V, V) == argmax(ref.data() + t * V, V);
    }
    std::printf("[hf %s] worst row rel err %.3g, top-1 agreement %d/%d\n", sub.c_str(), worst, agree, T);
    EXPECT_LT(worst, kLogitsRelTol);
    EXPECT_GE(agree, T - 1);
  }
}

}  // namespace
}  // namespace duet
