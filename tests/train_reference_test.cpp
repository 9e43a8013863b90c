// duet's training engine against PyTorch autograd (fixtures from
// tools/ref/make_train_fixture.py, computed in float64):
//  - one LP wide layer: the local loss, the input's and every weight's
//    gradient, and the losses of 10 AdamW steps (clipping, warmup + cosine,
//    weight decay);
//  - a tiny 4-layer model under LP pair (1,2): the global loss (KL to the
//    original's logits through the frozen layer above) and the lm loss, the
//    wide layer's gradients of both, and the losses of 10 steps of duet's own
//    heal() loop (global stage).
//
// Tolerances: duet computes in float32. Forward values and losses agree to
// ~1e-6 relative; gradients are compared per tensor against the tensor's own
// scale (max |ref|), 1e-4 of it, because float32 cancellation in sums of
// products leaves absolute, not relative, error. Ten Adam steps divide by
// sqrt(v), amplifying tiny gradient differences, so their losses get 1e-4
// relative (a wrong bias correction, decay or schedule moves them by >1e-2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/cpu_model.h"
#include "io/dequant.h"
#include "io/safetensors.h"
#include "model/loader.h"
#include "model/lp_merge.h"
#include "test_support.h"
#include "train_test_support.h"
#include "train/adamw.h"
#include "train/heal.h"
#include "train/layer.h"
#include "train/losses.h"
#include "train/model.h"

namespace duet::train {
namespace {

class TrainReference : public test::SingleThreadedTest {};

constexpr double kLossRel = 1e-5, kGradRel = 1e-4, kStepLossRel = 1e-4;

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/fixtures/train/" + name; }

std::vector<float> tensor(const SafetensorsModel& file, const std::string& name) {
  const TensorInfo* t = file.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  auto values = tensor_to_f32(*t);
  EXPECT_TRUE(values.ok()) << values.message();
  return std::move(values).value();
}

// Every entry within kGradRel of the reference tensor's largest magnitude.
void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double scale = 0, worst = 0;
  for (float r : ref) scale = std::max(scale, static_cast<double>(std::abs(r)));
  ASSERT_GT(scale, 0.0) << what << " is all zeros in the reference";
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(got[i] - ref[i])));
  EXPECT_LE(worst, kGradRel * scale) << what << ": max |duet - torch| " << worst << ", reference scale " << scale;
}

void expect_rel(const std::string& what, double got, double ref, double rel) {
  EXPECT_LE(std::abs(got - ref), rel * std::abs(ref)) << what << ": duet " << got << " torch " << ref;
}

TEST_F(TrainReference, WideLayerLossGradientsAndAdamWMatchPyTorch) {
  auto file = SafetensorsModel::open(fixture("layer.safetensors"));
  ASSERT_TRUE(file.ok()) << file.message() << " (regenerate: tools/ref/make_train_fixture.py)";
  const std::vector<float> cfg = tensor(*file, "config");  // T, D, H, Hkv, Dh, F
  const int T = static_cast<int>(cfg[0]), D = static_cast<int>(cfg[1]);
  ModelWeights w;
  w.config.dim = D;
  w.config.n_heads = static_cast<int>(cfg[2]);
  w.config.n_kv_heads = static_cast<int>(cfg[3]);
  w.config.head_dim = static_cast<int>(cfg[4]);
  w.config.ffn_dim = static_cast<int>(cfg[5]);
  w.config.rms_eps = 1e-5f;
  w.config.rope_theta = 10000.0f;
  w.config.rope_style = RopeStyle::Interleaved;
  LayerWeights l;
  l.n_heads = w.config.n_heads;
  l.n_kv_heads = w.config.n_kv_heads;
  l.ffn_dim = w.config.ffn_dim;
  l.source_layers = {0, 1};
  l.attn_norm.assign(D, 1.0f);
  l.ffn_norm.assign(D, 1.0f);
  const int QD = l.n_heads * w.config.head_dim, KD = l.n_kv_heads * w.config.head_dim, F = l.ffn_dim;
  l.attn_q = {QD, D, tensor(*file, "w.attn_q"), {}};
  l.attn_k = {KD, D, tensor(*file, "w.attn_k"), {}};
  l.attn_v = {KD, D, tensor(*file, "w.attn_v"), {}};
  l.attn_q_bias = tensor(*file, "w.attn_q_bias");
  l.attn_k_bias = tensor(*file, "w.attn_k_bias");
  l.attn_v_bias = tensor(*file, "w.attn_v_bias");
  l.attn_out = {D, QD, tensor(*file, "w.attn_output"), {}};
  l.ffn_gate = {F, D, tensor(*file, "w.ffn_gate"), {}};
  l.ffn_up = {F, D, tensor(*file, "w.ffn_up"), {}};
  l.ffn_down = {D, F, tensor(*file, "w.ffn_down"), {}};
  w.layers = {l};

  const ParamLayout layout = param_layout(w, {0});
  ASSERT_EQ(layout.tensors.size(), 10u);
  std::vector<float> params(layout.total), grads(layout.total, 0.0f), m(layout.total, 0.0f), v(layout.total, 0.0f);
  gather_params(w, layout, params.data());
  const std::vector<float> x = tensor(*file, "x"), target = tensor(*file, "target");
  const RopeBuffers rope(w.config, T);
  LayerActs acts;
  std::vector<float> out(T * D), dout(T * D), dx(T * D);
  auto step_loss = [&] {  // forward + backward into grads (zeroed), returns the loss
    const LayerSpec spec = layer_spec(w.layers[0], layout, params.data(), 0);
    layer_forward(w.config, rope.table(), spec, x.data(), T, acts, out.data());
    const float loss = mse_forward(out.data(), target.data(), T * D);
    std::fill(dout.begin(), dout.end(), 0.0f);
    std::fill(grads.begin(), grads.end(), 0.0f);
    mse_backward(out.data(), target.data(), T * D, 1.0f, dout.data());
    layer_backward(w.config, rope.table(), spec, acts, dout.data(), dx.data(), layer_grads(layout, grads.data(), 0));
    return loss;
  };
  expect_rel("loss", step_loss(), tensor(*file, "loss")[0], kLossRel);
  expect_close("dx", dx, tensor(*file, "dx"));
  for (const ParamTensor& t : layout.tensors) {
    const std::string name = t.name.substr(6);  // "blk.0."
    expect_close("grad." + name, std::vector<float>(grads.begin() + t.offset, grads.begin() + t.offset + t.numel()),
                 tensor(*file, "grad." + name));
  }

  // 10 AdamW steps, the recipe of make_train_fixture.py.
  const std::vector<float> ref_losses = tensor(*file, "adamw_losses");
  AdamWConfig adamw;
  adamw.weight_decay = 0.1f;
  for (int s = 0; s < 10; ++s) {
    const float loss = step_loss();
    expect_rel("AdamW step " + std::to_string(s) + " loss", loss, ref_losses[s], kStepLossRel);
    clip_grad_norm(grads.data(), layout.total, 1.0);
    adamw_update(params.data(), grads.data(), m.data(), v.data(), layout.total, s + 1, lr_at(s, 10, 2, 1e-2f, 0.1f),
                 adamw);
  }
  EXPECT_LT(ref_losses[9], 0.8 * ref_losses[0]);  // the reference itself learns
}

TEST_F(TrainReference, TinyModelGlobalAndLmMatchPyTorch) {
  auto ref = SafetensorsModel::open(fixture("model_ref.safetensors"));
  ASSERT_TRUE(ref.ok()) << ref.message() << " (regenerate: tools/ref/make_train_fixture.py)";
  auto original = load_weights(fixture("model"));
  ASSERT_TRUE(original.ok()) << original.message();
  auto lp = apply_lp_plan(*original, LpPlan{{1}});
  ASSERT_TRUE(lp.ok()) << lp.message();
  const ParamLayout layout = param_layout(*lp, wide_layers(*lp));
  ASSERT_EQ(layout.layers(), std::vector<int>{1});

  // duet's merge folds and stacks exactly as the reference does.
  std::vector<float> params(layout.total), grads(layout.total, 0.0f);
  gather_params(*lp, layout, params.data());
  for (const ParamTensor& t : layout.tensors) {
    expect_close("merged " + t.name, std::vector<float>(params.begin() + t.offset, params.begin() + t.offset + t.numel()),
                 tensor(*ref, t.name));
  }

  std::vector<int32_t> tokens;
  for (float t : tensor(*ref, "tokens")) tokens.push_back(static_cast<int32_t>(t));
  const int T = static_cast<int>(tokens.size()), V = original->config.vocab_size;
  const CpuModel p_model(*original, T);
  KvCache cache = p_model.new_cache(T);
  std::vector<float> p_logits, q_logits;
  ASSERT_TRUE(p_model.forward(tokens.data(), T, cache, LogitsMode::All, p_logits).ok());
  TrainModel q_model(*lp, layout, T);
  q_model.forward(params.data(), tokens.data(), T, q_logits);
  expect_rel("global loss", kl_forward(p_logits.data(), q_logits.data(), T, V), tensor(*ref, "loss")[0], kLossRel);
  std::vector<float> dlogits(q_logits.size(), 0.0f);
  kl_backward(p_logits.data(), q_logits.data(), T, V, 1.0f, dlogits.data());
  q_model.backward(params.data(), dlogits.data(), grads.data());
  for (const ParamTensor& t : layout.tensors) {
    expect_close("grad." + t.name, std::vector<float>(grads.begin() + t.offset, grads.begin() + t.offset + t.numel()),
                 tensor(*ref, "grad." + t.name));
  }

  // The lm objective through the same model.
  std::fill(grads.begin(), grads.end(), 0.0f);
  std::fill(dlogits.begin(), dlogits.end(), 0.0f);
  expect_rel("lm loss", cross_entropy_forward(q_logits.data(), tokens.data(), T, V), tensor(*ref, "lm_loss")[0],
             kLossRel);
  cross_entropy_backward(q_logits.data(), tokens.data(), T, V, 1.0f, dlogits.data());
  q_model.backward(params.data(), dlogits.data(), grads.data());
  for (const ParamTensor& t : layout.tensors) {
    expect_close("lm_grad." + t.name, std::vector<float>(grads.begin() + t.offset, grads.begin() + t.offset + t.numel()),
                 tensor(*ref, "lm_grad." + t.name));
  }

  // 10 steps of heal()'s global stage on that one sequence (batch 1, 10 copies).
  TrainData data;
  data.train.assign(10, tokens);
  HealOptions o;
  o.stages = {Stage::Global};
  o.batch = 1;
  o.lr = 1e-2f;
  o.adamw.weight_decay = 0.1f;
  std::vector<float> losses;
  o.on_step = [&](const StepReport& r) { losses.push_back(r.loss); };
  ModelWeights healed = std::move(lp).value();
  auto r = heal(*original, healed, data, o);
  ASSERT_TRUE(r.ok()) << r.message();
  const std::vector<float> ref_losses = tensor(*ref, "adamw_losses");
  ASSERT_EQ(losses.size(), ref_losses.size());
  for (size_t s = 0; s < losses.size(); ++s) {
    expect_rel("heal step " + std::to_string(s) + " loss", losses[s], ref_losses[s], kStepLossRel);
  }
  EXPECT_LT(ref_losses[9], 0.8 * ref_losses[0]);
}

}  // namespace
}  // namespace duet::train
