// SmolLM2-135M (real Q4_1 weights) on the GPU against the CPU reference, with
// and without LP. The model is not in the GPU image: set DUET_SMOLLM2_GGUF to
// its path (tools/gpu/smollm2_on_gpu.sh does); without it the test is skipped.
//
// Both sides use the weights as the GPU stores them (rounded to bf16), so the
// comparison isolates the GPU's bf16 activations, as in cuda_model_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <vector>

#include "backends/cpu/cpu_model.h"
#include "backends/cuda/cuda_model.h"
#include "io/gguf.h"
#include "model/loader.h"
#include "model/lp_merge.h"
#include "runtime/sampler.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace duet {
namespace {

// Relative L2 error per logits row. The random models of cuda_model_test.cpp
// stay under 3e-2; on this real model bf16 activations cost more (its
// first-token rows carry large outlier activations): measured up to 4.3%
// without LP and 7.3% with --lp 10:26 on the H100. For scale, llama.cpp's own
// 8-bit activation path (Q4_1 x q8_1) differs from its float32 path on this
// model by up to 11.3% per row (same prompts, tools/ref/gguf_to_f32.py copy).
constexpr double kLogitsRelTol = 8e-2;
// A greedy step may differ only where the CPU's top two logits are this close:
// such near-ties flip under bf16 noise (measured: a 0.0014 margin flipped).
constexpr double kNearTieMargin = 0.05;
constexpr int kGreedyTokens = 16;

double rel_l2(const float* a, const float* ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    if (std::isnan(a[i])) return INFINITY;
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

class CudaSmolLM2 : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaSmolLM2, LogitsAndGreedyTextMatchCpu) {
  const char* path = std::getenv("DUET_SMOLLM2_GGUF");
  if (!path) GTEST_SKIP() << "DUET_SMOLLM2_GGUF is not set";
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file.ok()) << file.message();
  auto weights = load_weights_gguf(*file);
  ASSERT_TRUE(weights.ok()) << weights.message();
  auto tokenizer = Tokenizer::from_gguf(*file);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.message();
  auto plan = parse_lp_plan_text(GetParam());
  ASSERT_TRUE(plan.ok());
  auto merged = apply_lp_plan(test::rounded_to_bf16(std::move(weights).value()), *plan);
  ASSERT_TRUE(merged.ok()) << merged.message();
  const ModelWeights& w = *merged;
  const int V = w.config.vocab_size;

  CudaModelOptions options;
  options.max_context = 128;
  auto gpu = CudaModel::create(w, options);
  ASSERT_TRUE(gpu.ok()) << gpu.message();
  CpuModel cpu(w, 128);
  for (const char* text : {"The capital of France is", "def fibonacci(n):",
                           "Once upon a time, in a small village by the sea,"}) {
    SCOPED_TRACE(text);
    const std::vector<int32_t> prompt = tokenizer->encode(text, false, true);
    const int T = static_cast<int>(prompt.size());
    KvCache cache = cpu.new_cache(128);
    (*gpu)->reset(0);
    std::vector<float> ref, out;
    ASSERT_TRUE(cpu.forward(prompt.data(), T, cache, LogitsMode::All, ref).ok());
    ASSERT_TRUE((*gpu)->prefill(0, prompt.data(), T, LogitsMode::All, out).ok());
    for (int t = 0; t < T; ++t) EXPECT_LT(rel_l2(out.data() + t * V, ref.data() + t * V, V), kLogitsRelTol) << "row " << t;

    // Greedy continuation, each side on its own cache and its own tokens.
    const float* ref_row = ref.data() + (T - 1) * V;
    int32_t a = argmax(ref_row, V), b = argmax(out.data() + (T - 1) * V, V);
    for (int step = 0; step < kGreedyTokens; ++step) {
      if (a != b) {
        std::vector<float> top(ref_row, ref_row + V);
        std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
        EXPECT_LT(top[0] - top[1], kNearTieMargin) << "step " << step << ": cpu " << a << ", gpu " << b;
        break;  // the two continuations part here
      }
      ASSERT_TRUE(cpu.forward(&a, 1, cache, LogitsMode::Last, ref).ok());
      ASSERT_TRUE((*gpu)->decode(&b, 1, out).ok());
      EXPECT_LT(rel_l2(out.data(), ref.data(), V), kLogitsRelTol) << "decode step " << step;
      ref_row = ref.data();
      a = argmax(ref_row, V);
      b = argmax(out.data(), V);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Plans, CudaSmolLM2, ::testing::Values("", "10:26"));

}  // namespace
}  // namespace duet
