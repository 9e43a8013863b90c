// The trainer's layer and model against the inference path and against
// finite differences:
//  - a wide layer's forward equals CpuModel's attention and FFN blocks on the
//    same input, and TrainModel's logits equal CpuModel's, for llama, qwen2
//    (QKV bias) and qwen3 (q/k norm) shapes;
//  - every trained tensor's gradient (and the layer input's) matches central
//    differences, for the local objective on one wide layer and for the
//    global (KL) and lm (cross-entropy) objectives through the frozen layers above.
#include <gtest/gtest.h>

#include <random>

#include "backends/cpu/cpu_model.h"
#include "train_test_support.h"
#include "model/lp_merge.h"
#include "test_support.h"
#include "train/layer.h"
#include "train/losses.h"
#include "train/model.h"

namespace duet::train {
namespace {

class TrainLayer : public test::SingleThreadedTest {};
class TrainModelGradients : public test::SingleThreadedTest {};

using test::dot;
using test::expect_gradient;

constexpr int kT = 7;
// The training forward runs the same float32 ops as CpuModel (same sgemm, same
// softmax); only summation orders inside OpenBLAS may differ with threading.
constexpr double kForwardTolerance = 1e-5;
// A layer's scalar loss sums T*D ~ 450 float32 outputs; their rounding (~1e-6
// relative each) divided by 2h = 2e-2 gives ~1e-3 of noise in the numeric
// gradient, hence a looser absolute term than the single ops' 2e-3.
const test::GradientTolerance kLayerTolerance{1e-2, 4e-3, 2e-2};

const test::GradientTolerance kModelTolerance{1e-2, 5e-4, 1e-2};

std::vector<float> randn(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

struct Family {
  const char* name;
  ModelConfig config;
};
std::vector<Family> families() {
  return {{"llama", test::tiny_llama_config()}, {"qwen2", test::tiny_qwen2_config()}, {"qwen3", test::tiny_qwen3_config()}};
}

// The tiny model with layers (2, 3) merged into wide layer 2.
ModelWeights lp_model(const ModelConfig& c, uint64_t seed) {
  auto lp = apply_lp_plan(test::random_weights(c, seed), LpPlan{{2}});
  EXPECT_TRUE(lp.ok()) << lp.message();
  return std::move(lp).value();
}

TEST_F(TrainLayer, WideLayerForwardMatchesCpuModel) {
  for (const Family& f : families()) {
    SCOPED_TRACE(f.name);
    const ModelWeights lp = lp_model(f.config, 1);
    const LayerWeights& wide = lp.layers[2];
    ASSERT_EQ(wide.n_heads, 2 * f.config.n_heads);
    const int D = f.config.dim;
    const std::vector<float> x = randn(kT * D, 2);

    const CpuModel model(lp, kT);
    KvCache cache = model.new_cache(kT);
    std::vector<float> attn(kT * D), h(kT * D), ffn(kT * D), expected(kT * D);
    model.attention_block(wide, cache.layers[2], 0, x.data(), kT, attn.data());
    for (int i = 0; i < kT * D; ++i) h[i] = x[i] + attn[i];
    model.ffn_block(wide, h.data(), kT, ffn.data());
    for (int i = 0; i < kT * D; ++i) expected[i] = h[i] + ffn[i];

    const RopeBuffers rope(lp.config, kT);
    LayerActs acts;
    std::vector<float> out(kT * D);
    layer_forward(lp.config, rope.table(), layer_spec(wide), x.data(), kT, acts, out.data());
    const test::Diff d = test::max_abs_diff(out, expected);
    EXPECT_LT(d.max_abs, kForwardTolerance) << "at " << d.argmax_index;
  }
}

TEST_F(TrainLayer, ModelLogitsMatchCpuModel) {
  for (const Family& f : families()) {
    SCOPED_TRACE(f.name);
    const ModelWeights lp = lp_model(f.config, 3);
    const ParamLayout layout = param_layout(lp, wide_layers(lp));
    std::vector<float> params(layout.total);
    gather_params(lp, layout, params.data());
    const std::vector<int32_t> tokens{1, 17, 250, 3, 99, 42, 7};
    TrainModel train(lp, layout, kT);
    std::vector<float> logits, expected;
    train.forward(params.data(), tokens.data(), kT, logits);
    const CpuModel model(lp, kT);
    KvCache cache = model.new_cache(kT);
    ASSERT_TRUE(model.forward(tokens.data(), kT, cache, LogitsMode::All, expected).ok());
    const test::Diff d = test::max_abs_diff(logits, expected);
    EXPECT_LT(d.max_abs, 1e-4) << "logits of O(10); at " << d.argmax_index;
  }
}

TEST_F(TrainLayer, WideLayerGradientsMatchFiniteDifferences) {
  for (const Family& f : families()) {
    SCOPED_TRACE(f.name);
    const ModelWeights lp = lp_model(f.config, 4);
    const ParamLayout layout = param_layout(lp, {2});
    std::vector<float> params(layout.total), grads(layout.total, 0.0f);
    gather_params(lp, layout, params.data());
    const int D = f.config.dim;
    std::vector<float> x = randn(kT * D, 5), r = randn(kT * D, 6), out(kT * D), dx(kT * D);
    const RopeBuffers rope(lp.config, kT);
    LayerActs acts;
    auto loss = [&] {
      layer_forward(lp.config, rope.table(), layer_spec(lp.layers[2], layout, params.data(), 2), x.data(), kT, acts,
                    out.data());
      return dot(out, r);
    };
    loss();
    layer_backward(lp.config, rope.table(), layer_spec(lp.layers[2], layout, params.data(), 2), acts, r.data(),
                   dx.data(), layer_grads(layout, grads.data(), 2));
    expect_gradient("dx", x, dx, loss, kLayerTolerance, 64);
    for (const ParamTensor& t : layout.tensors) {
      std::vector<float> p(params.begin() + t.offset, params.begin() + t.offset + t.numel());
      const std::vector<float> g(grads.begin() + t.offset, grads.begin() + t.offset + t.numel());
      auto tensor_loss = [&] {
        std::copy(p.begin(), p.end(), params.begin() + t.offset);
        return loss();
      };
      expect_gradient(t.name, p, g, tensor_loss, kLayerTolerance, 24);
      std::copy(p.begin(), p.end(), params.begin() + t.offset);
    }
  }
}

// KL to the original and cross-entropy through TrainModel: layer 2 of the LP model is wide and trained,
// layers 3 and 4 above it are frozen, so the gradients cross two frozen layers and the final norm.
TEST_F(TrainModelGradients, GlobalAndLmMatchFiniteDifferences) {
  for (const Family& f : families()) {
    SCOPED_TRACE(f.name);
    const ModelWeights original = test::random_weights(f.config, 7);
    const ModelWeights lp = lp_model(f.config, 7);
    const ParamLayout layout = param_layout(lp, wide_layers(lp));
    ASSERT_EQ(layout.layers(), std::vector<int>{2});
    std::vector<float> params(layout.total);
    gather_params(lp, layout, params.data());
    const std::vector<int32_t> tokens{5, 260, 31, 8, 77, 140, 2};
    const int V = f.config.vocab_size;
    std::vector<float> target;
    const CpuModel model(original, kT);
    KvCache cache = model.new_cache(kT);
    ASSERT_TRUE(model.forward(tokens.data(), kT, cache, LogitsMode::All, target).ok());

    TrainModel train(lp, layout, kT);
    std::vector<float> logits;
    for (bool global : {true, false}) {
      SCOPED_TRACE(global ? "global (KL)" : "lm (cross-entropy)");
      auto loss = [&] {
        train.forward(params.data(), tokens.data(), kT, logits);
        return static_cast<double>(global ? kl_forward(target.data(), logits.data(), kT, V)
                                          : cross_entropy_forward(logits.data(), tokens.data(), kT, V));
      };
      const double l0 = loss();
      EXPECT_GT(l0, 0.0);
      std::vector<float> dlogits(logits.size(), 0.0f), grads(layout.total, 0.0f);
      if (global) kl_backward(target.data(), logits.data(), kT, V, 1.0f, dlogits.data());
      else cross_entropy_backward(logits.data(), tokens.data(), kT, V, 1.0f, dlogits.data());
      train.backward(params.data(), dlogits.data(), grads.data());
      // The losses are means over 7 tokens of float32 logits (error ~1e-6): ~5e-5 of noise in the numeric
      // gradient at h = 1e-2, plus O(h^2) truncation, largest (~2e-4, seen on qwen2's k bias) where a
      // small gradient meets a curved loss; a smaller h drowns in float32 noise. Gradients are O(1e-3..1e-1).
      for (const ParamTensor& t : layout.tensors) {
        std::vector<float> p(params.begin() + t.offset, params.begin() + t.offset + t.numel());
        const std::vector<float> g(grads.begin() + t.offset, grads.begin() + t.offset + t.numel());
        auto tensor_loss = [&] {
          std::copy(p.begin(), p.end(), params.begin() + t.offset);
          return loss();
        };
        expect_gradient(t.name, p, g, tensor_loss, kModelTolerance, 12);
        std::copy(p.begin(), p.end(), params.begin() + t.offset);
      }
    }
  }
}

// Recomputation (TrainModel's recompute, which --recompute and the GPU's memory rule turn on) keeps each
// layer's input and reruns its forward in the backward: the logits and every gradient must equal, bit for bit,
// those of the model that kept the activations (the finite-difference test above checks that one), on two
// forward/backward rounds (the second reuses the buffers).
TEST_F(TrainModelGradients, RecomputeGivesTheSameGradientsBitForBit) {
  for (const Family& f : families()) {
    SCOPED_TRACE(f.name);
    const ModelWeights lp = lp_model(f.config, 9);
    const ParamLayout layout = param_layout(lp, wide_layers(lp));
    std::vector<float> params(layout.total);
    gather_params(lp, layout, params.data());
    const std::vector<int32_t> tokens{5, 260, 31, 8, 77, 140, 2};
    TrainModel kept(lp, layout, kT), recomputed(lp, layout, kT, /*recompute=*/true);
    std::vector<float> grads_kept(layout.total, 0.0f), grads_recomputed(layout.total, 0.0f);
    for (int round = 0; round < 2; ++round) {
      std::vector<float> logits_kept, logits_recomputed;
      kept.forward(params.data(), tokens.data(), kT, logits_kept);
      recomputed.forward(params.data(), tokens.data(), kT, logits_recomputed);
      ASSERT_EQ(logits_kept, logits_recomputed);
      const std::vector<float> dlogits = randn(logits_kept.size(), 40 + round);
      kept.backward(params.data(), dlogits.data(), grads_kept.data());
      recomputed.backward(params.data(), dlogits.data(), grads_recomputed.data());
      EXPECT_EQ(grads_kept, grads_recomputed) << "round " << round;
      EXPECT_GT(dot(grads_kept, grads_kept), 0.0);
    }
  }
}

// layer_activation_floats (the GPU healer's memory rule) counts exactly what a layer's forward keeps.
TEST_F(TrainLayer, ActivationFloatsCountWhatTheForwardKeeps) {
  for (const Family& f : families()) {
    SCOPED_TRACE(f.name);
    const ModelWeights lp = lp_model(f.config, 11);
    const RopeBuffers rope(lp.config, kT);
    const std::vector<float> x = randn(static_cast<size_t>(kT) * f.config.dim, 12);
    std::vector<float> out(x.size());
    for (int l : {1, 2}) {  // a plain layer and the wide one
      const LayerSpec spec = layer_spec(lp.layers[l]);
      LayerActs a;
      layer_forward(lp.config, rope.table(), spec, x.data(), kT, a, out.data());
      size_t kept = 0;
      for (const std::vector<float>* v : {&a.x, &a.rstd1, &a.xn1, &a.q_lin, &a.k_lin, &a.q_rstd, &a.k_rstd, &a.q,
                                          &a.k, &a.v, &a.att, &a.attn_y, &a.h, &a.rstd2, &a.xn2, &a.gate, &a.up,
                                          &a.act}) {
        kept += v->size();
      }
      EXPECT_EQ(layer_activation_floats(lp.config, spec, 1, kT), static_cast<int64_t>(kept)) << "layer " << l;
      EXPECT_EQ(layer_activation_floats(lp.config, spec, 3, kT), 3 * static_cast<int64_t>(kept)) << "layer " << l;
    }
  }
}

}  // namespace
}  // namespace duet::train
