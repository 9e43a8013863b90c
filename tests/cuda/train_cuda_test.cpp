// The CUDA training engine against its CPU reference (src/train/cuda vs
// src/train): every op's forward and backward on awkward sizes, B sequences at
// once on the GPU against the CPU op run per sequence; a whole wide layer's
// output and every weight gradient (llama, qwen2 with biases, qwen3 with q/k
// norms); the whole LP model's gradients with activations kept and recomputed;
// uploads of part of a model; 10 AdamW steps of the local and of the global
// stage, loss by loss. Runs only on a GPU (duet_cuda_tests).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "model/lp_merge.h"
#include "runtime/bench_shapes.h"
#include "runtime/loaded_model.h"
#include "test_support.h"
#include "train/adamw.h"
#include "train/cuda/heal_cuda.h"
#include "train/cuda/model.cuh"
#include "train/heal.h"
#include "train/losses.h"
#include "train/model.h"

namespace duet::train {
namespace {

namespace gpu = cuda;

// Tolerances, relative to the largest magnitude of the CPU reference tensor:
//  - kTf32: anything through a cuBLAS product. TF32 rounds each input to 11 significant bits (2^-11 = 5e-4
//    relative); sums of K terms of random sign grow that as sqrt(K) at most ~10x for these sizes.
//  - kFp32: elementwise ops, norms and softmax-based losses, all fp32 on both sides (the CPU sums some
//    reductions in double; fp32 sums of <= 1e4 terms are within ~1e-6 relative).
//  - kSteps: losses of 10 optimizer steps: the TF32 gradients above feed AdamW, whose update is
//    scale-free (m / sqrt(v)), so small gradient errors move weights by up to lr x error/|g|.
constexpr double kTf32 = 5e-3;
constexpr double kFp32 = 2e-5;
constexpr double kSteps = 2e-2;

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// max |a - b| / max(|b|, tiny): a from the GPU, b the CPU reference.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / scale;
}

#define EXPECT_CLOSE(gpu_values, cpu_values, tol) \
  EXPECT_LE(rel_err(gpu_values, cpu_values), tol) << #gpu_values " vs " #cpu_values

// A host vector mirrored on the device.
struct Dev {
  explicit Dev(const std::vector<float>& host) : n(static_cast<int64_t>(host.size())) {
    EXPECT_TRUE(buf.upload(host).ok());
  }
  explicit Dev(size_t size) : Dev(std::vector<float>(size, 0.0f)) {}
  std::vector<float> get() const {
    std::vector<float> out(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(buf.download(out.data(), n).ok());
    return out;
  }
  float* ptr() const { return buf.get(); }
  int64_t n;
  gpu::DeviceArray<float> buf;
};

class TrainCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cudaStreamCreate(&ctx.stream), cudaSuccess);
    ASSERT_EQ(cublasCreate(&ctx.blas), CUBLAS_STATUS_SUCCESS);
    ASSERT_TRUE(reduce.reserve(gpu::TrainContext::kReduceSlots).ok());
    ctx.reduce = reduce.get();
  }
  void TearDown() override {
    cublasDestroy(ctx.blas);
    cudaStreamDestroy(ctx.stream);
  }
  gpu::TrainContext ctx;
  gpu::DeviceArray<double> reduce;
};

TEST_F(TrainCuda, RmsNormForwardBackward) {
  const int R = 19, D = 111;
  const auto x = randn(R * D, 1), g = randn(D, 2), dy = randn(R * D, 3), dx0 = randn(R * D, 4);
  for (bool with_gain : {true, false}) {
    const float* gain = with_gain ? g.data() : nullptr;
    std::vector<float> y(R * D), rstd(R), dx = dx0;
    rms_norm_forward(x.data(), gain, y.data(), rstd.data(), R, D, 1e-5f);
    rms_norm_backward(dy.data(), x.data(), gain, rstd.data(), dx.data(), R, D);
    Dev gx(x), gg(g), gy(R * D), grstd(R), gdy(dy), gdx(dx0);
    ASSERT_TRUE(gpu::rms_norm_forward(ctx, gx.ptr(), with_gain ? gg.ptr() : nullptr, gy.ptr(), grstd.ptr(), R, D, 1e-5f).ok());
    ASSERT_TRUE(gpu::rms_norm_backward(ctx, gdy.ptr(), gx.ptr(), with_gain ? gg.ptr() : nullptr, grstd.ptr(), gdx.ptr(), R, D).ok());
    EXPECT_CLOSE(gy.get(), y, kFp32);
    EXPECT_CLOSE(grstd.get(), rstd, kFp32);
    EXPECT_CLOSE(gdx.get(), dx, kFp32);
  }
}

TEST_F(TrainCuda, RmsNormHeadsForwardBackward) {
  const int R = 19, H = 3, Dh = 24, n = R * H * Dh;
  const auto x = randn(n, 5), w = randn(H * Dh, 6), dy = randn(n, 7), dx0 = randn(n, 8), dw0 = randn(H * Dh, 9);
  std::vector<float> y(n), rstd(R * H), dx = dx0, dw = dw0;
  rms_norm_heads_forward(x.data(), w.data(), y.data(), rstd.data(), R, H, Dh, 1e-6f);
  rms_norm_heads_backward(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), R, H, Dh);
  Dev gx(x), gw(w), gy(n), grstd(R * H), gdy(dy), gdx(dx0), gdw(dw0);
  ASSERT_TRUE(gpu::rms_norm_heads_forward(ctx, gx.ptr(), gw.ptr(), gy.ptr(), grstd.ptr(), R, H, Dh, 1e-6f).ok());
  ASSERT_TRUE(gpu::rms_norm_heads_backward(ctx, gdy.ptr(), gx.ptr(), gw.ptr(), grstd.ptr(), gdx.ptr(), gdw.ptr(), R, H, Dh).ok());
  EXPECT_CLOSE(gy.get(), y, kFp32);
  EXPECT_CLOSE(gdx.get(), dx, kFp32);
  EXPECT_CLOSE(gdw.get(), dw, kFp32);
}

TEST_F(TrainCuda, MatmulForwardBackward) {
  for (auto [R, N, K] : {std::tuple{37, 53, 71}, {1, 19, 111}, {989, 24, 576}}) {
    const auto x = randn(R * K, 10), w = randn(N * K, 11, 0.1f), b = randn(N, 12), dy = randn(R * N, 13);
    const auto dx0 = randn(R * K, 14), dw0 = randn(N * K, 15), db0 = randn(N, 16);
    std::vector<float> y(R * N), dx = dx0, dw = dw0, db = db0;
    matmul_forward(x.data(), w.data(), b.data(), y.data(), R, N, K);
    matmul_backward(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), R, N, K);
    Dev gx(x), gw(w), gb(b), gy(R * N), gdy(dy), gdx(dx0), gdw(dw0), gdb(db0);
    ASSERT_TRUE(gpu::matmul_forward(ctx, gx.ptr(), gw.ptr(), gb.ptr(), gy.ptr(), R, N, K).ok());
    ASSERT_TRUE(gpu::matmul_backward(ctx, gdy.ptr(), gx.ptr(), gw.ptr(), gdx.ptr(), gdw.ptr(), gdb.ptr(), R, N, K).ok());
    EXPECT_CLOSE(gy.get(), y, kTf32) << R << "x" << N << "x" << K;
    EXPECT_CLOSE(gdx.get(), dx, kTf32);
    EXPECT_CLOSE(gdw.get(), dw, kTf32);
    EXPECT_CLOSE(gdb.get(), db, kFp32);
  }
}

TEST_F(TrainCuda, RopeForwardBackwardBothPairings) {
  const int B = 3, T = 19, H = 3;
  for (RopeStyle style : {RopeStyle::HalfSplit, RopeStyle::Interleaved}) {
    ModelConfig c = test::tiny_llama_config();
    c.rope_style = style;
    const RopeBuffers rope(c, T);
    const int Dh = c.head_dim, n = B * T * H * Dh;
    const auto x = randn(n, 17);
    Dev gcos(rope.cos), gsin(rope.sin), gx(x), gd(x);
    const gpu::RopeTable table{Dh, T, style, gcos.ptr(), gsin.ptr()};
    ASSERT_TRUE(gpu::rope_forward(ctx, gx.ptr(), B, T, H, table).ok());
    ASSERT_TRUE(gpu::rope_backward(ctx, gd.ptr(), B, T, H, table).ok());
    std::vector<float> fwd = x, bwd = x;
    for (int b = 0; b < B; ++b) {  // positions restart at each sequence
      rope_forward(fwd.data() + b * T * H * Dh, T, H, rope.table());
      rope_backward(bwd.data() + b * T * H * Dh, T, H, rope.table());
    }
    EXPECT_CLOSE(gx.get(), fwd, kFp32);
    EXPECT_CLOSE(gd.get(), bwd, kFp32);
  }
}

TEST_F(TrainCuda, AttentionForwardBackwardGqa) {
  for (auto [B, T, H, Hkv, Dh] : {std::tuple{2, 19, 6, 2, 16}, {1, 111, 4, 4, 64}, {3, 1, 2, 1, 8}}) {
    const int nq = B * T * H * Dh, nk = B * T * Hkv * Dh;
    const auto q = randn(nq, 20), k = randn(nk, 21), v = randn(nk, 22), dout = randn(nq, 23);
    const auto dq0 = randn(nq, 24), dk0 = randn(nk, 25), dv0 = randn(nk, 26);
    std::vector<float> out(nq), att(static_cast<size_t>(B) * H * T * T), dq = dq0, dk = dk0, dv = dv0;
    const int sq = T * H * Dh, sk = T * Hkv * Dh, sa = H * T * T;
    for (int b = 0; b < B; ++b) {
      attention_forward(q.data() + b * sq, k.data() + b * sk, v.data() + b * sk, out.data() + b * sq,
                        att.data() + b * sa, T, H, Hkv, Dh);
      attention_backward(dout.data() + b * sq, q.data() + b * sq, k.data() + b * sk, v.data() + b * sk,
                         att.data() + b * sa, dq.data() + b * sq, dk.data() + b * sk, dv.data() + b * sk, T, H, Hkv,
                         Dh);
    }
    Dev gq(q), gk(k), gv(v), gout(nq), gatt(att.size()), gdatt(att.size()), gdout(dout), gdq(dq0), gdk(dk0), gdv(dv0);
    ASSERT_TRUE(gpu::attention_forward(ctx, gq.ptr(), gk.ptr(), gv.ptr(), gout.ptr(), gatt.ptr(), B, T, H, Hkv, Dh).ok());
    ASSERT_TRUE(gpu::attention_backward(ctx, gdout.ptr(), gq.ptr(), gk.ptr(), gv.ptr(), gatt.ptr(), gdatt.ptr(),
                                        gdq.ptr(), gdk.ptr(), gdv.ptr(), B, T, H, Hkv, Dh).ok());
    // The CPU leaves att[s > t] unset; the GPU writes zeros there: compare the causal entries.
    std::vector<float> att_gpu = gatt.get();
    for (int64_t i = 0; i < static_cast<int64_t>(att.size()); ++i) {
      if ((i % T) > (i / T) % T) att[i] = att_gpu[i] = 0.0f;
    }
    EXPECT_CLOSE(att_gpu, att, kTf32) << "B " << B << " T " << T;
    EXPECT_CLOSE(gout.get(), out, kTf32);
    EXPECT_CLOSE(gdq.get(), dq, kTf32);
    EXPECT_CLOSE(gdk.get(), dk, kTf32);
    EXPECT_CLOSE(gdv.get(), dv, kTf32);
  }
}

TEST_F(TrainCuda, SwigluAndResidual) {
  const int n = 1001;
  const auto gate = randn(n, 30, 3.0f), up = randn(n, 31), dout = randn(n, 32), da0 = randn(n, 33), db0 = randn(n, 34);
  std::vector<float> out(n), dg = da0, du = db0, sum(n), ra = da0, rb = db0;
  swiglu_forward(gate.data(), up.data(), out.data(), n);
  swiglu_backward(dout.data(), gate.data(), up.data(), dg.data(), du.data(), n);
  residual_forward(gate.data(), up.data(), sum.data(), n);
  residual_backward(dout.data(), ra.data(), rb.data(), n);
  Dev ggate(gate), gup(up), gout(n), gdout(dout), gdg(da0), gdu(db0), gsum(n), gra(da0), grb(db0);
  ASSERT_TRUE(gpu::swiglu_forward(ctx, ggate.ptr(), gup.ptr(), gout.ptr(), n).ok());
  ASSERT_TRUE(gpu::swiglu_backward(ctx, gdout.ptr(), ggate.ptr(), gup.ptr(), gdg.ptr(), gdu.ptr(), n).ok());
  ASSERT_TRUE(gpu::residual_forward(ctx, ggate.ptr(), gup.ptr(), gsum.ptr(), n).ok());
  ASSERT_TRUE(gpu::residual_backward(ctx, gdout.ptr(), gra.ptr(), grb.ptr(), n).ok());
  EXPECT_CLOSE(gout.get(), out, kFp32);
  EXPECT_CLOSE(gdg.get(), dg, kFp32);
  EXPECT_CLOSE(gdu.get(), du, kFp32);
  EXPECT_CLOSE(gsum.get(), sum, kFp32);
  EXPECT_CLOSE(gra.get(), ra, kFp32);
  EXPECT_CLOSE(grb.get(), rb, kFp32);
}

TEST_F(TrainCuda, Losses) {
  // MSE over 999 values.
  const int n = 999;
  const auto y = randn(n, 40), t = randn(n, 41), d0 = randn(n, 42);
  std::vector<float> dy = d0;
  const float mse = mse_forward(y.data(), t.data(), n);
  mse_backward(y.data(), t.data(), n, 0.25f, dy.data());
  Dev gy(y), gt(t), gdy(d0), scalars(4);
  ASSERT_TRUE(gpu::mse_forward(ctx, gy.ptr(), gt.ptr(), n, scalars.ptr(), scalars.ptr() + 1).ok());
  ASSERT_TRUE(gpu::mse_backward(ctx, gy.ptr(), gt.ptr(), scalars.ptr() + 1, n, 0.25f, gdy.ptr()).ok());
  EXPECT_NEAR(scalars.get()[0], mse, kFp32 * mse);
  EXPECT_CLOSE(gdy.get(), dy, kFp32);

  // KL and cross-entropy over B = 2 sequences of T = 9 rows of V = 1003 logits.
  const int B = 2, T = 9, V = 1003, R = B * T;
  const auto p = randn(R * V, 43, 2.0f), q = randn(R * V, 44, 2.0f), dq0 = randn(R * V, 45, 1e-3f);
  std::vector<int32_t> tokens(R);
  for (int i = 0; i < R; ++i) tokens[i] = (i * 397) % V;
  std::vector<float> dkl = dq0, dce = dq0;
  const float kl = kl_forward(p.data(), q.data(), R, V);
  kl_backward(p.data(), q.data(), R, V, 0.5f, dkl.data());
  double ce = 0;
  for (int b = 0; b < B; ++b) {  // the CPU objective is per sequence; the batch mean weighs each by 1/B
    ce += cross_entropy_forward(q.data() + b * T * V, tokens.data() + b * T, T, V) / B;
    cross_entropy_backward(q.data() + b * T * V, tokens.data() + b * T, T, V, 0.5f / B, dce.data() + b * T * V);
  }
  gpu::DeviceArray<int32_t> gtok;
  ASSERT_TRUE(gtok.upload(tokens).ok());
  Dev gp(p), gq(q), gdkl(dq0), gdce(dq0);
  ASSERT_TRUE(gpu::kl_forward(ctx, gp.ptr(), gq.ptr(), R, V, scalars.ptr() + 2).ok());
  ASSERT_TRUE(gpu::kl_backward(ctx, gp.ptr(), gq.ptr(), R, V, 0.5f, gdkl.ptr()).ok());
  ASSERT_TRUE(gpu::cross_entropy_forward(ctx, gq.ptr(), gtok.get(), B, T, V, scalars.ptr() + 3).ok());
  ASSERT_TRUE(gpu::cross_entropy_backward(ctx, gq.ptr(), gtok.get(), B, T, V, 0.5f, gdce.ptr()).ok());
  const std::vector<float> s = scalars.get();
  EXPECT_NEAR(s[2], kl, kFp32 * 10 * kl);  // KL sums V terms of both signs: fp32 cancellation
  EXPECT_NEAR(s[3], ce, kFp32 * ce);
  EXPECT_CLOSE(gdkl.get(), dkl, kFp32);
  EXPECT_CLOSE(gdce.get(), dce, kFp32);
}

TEST_F(TrainCuda, AdamWAndClipping) {
  const int n = 100003;
  auto p = randn(n, 50), m = randn(n, 51, 0.01f), v = randn(n, 52, 0.01f);
  for (float& x : v) x = x * x;
  const auto g = randn(n, 53);
  Dev gp(p), gm(m), gv(v), gg(g);
  gpu::DeviceArray<double> norm2;
  ASSERT_TRUE(norm2.reserve(1).ok());
  std::vector<float> gc = g;
  const double norm = clip_grad_norm(gc.data(), n, 10.0);
  ASSERT_TRUE(gpu::grad_norm_squared(ctx, gg.ptr(), n, norm2.get()).ok());
  ASSERT_TRUE(gpu::scale_by_clip(ctx, gg.ptr(), n, norm2.get(), 10.0f).ok());
  double gpu_norm2 = 0;
  ASSERT_TRUE(norm2.download(&gpu_norm2, 1).ok());
  EXPECT_NEAR(std::sqrt(gpu_norm2), norm, 1e-9 * norm);
  EXPECT_CLOSE(gg.get(), gc, kFp32);
  const AdamWConfig c{0.9f, 0.95f, 1e-8f, 0.1f};
  for (int t = 1; t <= 3; ++t) {
    adamw_update(p.data(), gc.data(), m.data(), v.data(), n, t, 1e-3f, c);
    ASSERT_TRUE(gpu::adamw_update(ctx, gp.ptr(), gg.ptr(), gm.ptr(), gv.ptr(), n, t, 1e-3f, c.beta1, c.beta2, c.eps,
                                  c.weight_decay).ok());
  }
  EXPECT_CLOSE(gp.get(), p, kFp32);
  EXPECT_CLOSE(gm.get(), m, kFp32);
  EXPECT_CLOSE(gv.get(), v, kFp32);
}

// A wide layer (tiny model, layers 2 and 3 merged) on B = 2 sequences: its output, the input's gradient and
// every weight gradient against the CPU layer run per sequence.
TEST_F(TrainCuda, WideLayerGradientsMatchCpu) {
  for (ModelConfig c : {test::tiny_llama_config(), test::tiny_qwen2_config(), test::tiny_qwen3_config()}) {
    auto merged = apply_lp_plan(test::random_weights(c, 60), LpPlan{{2}});
    ASSERT_TRUE(merged.ok()) << merged.message();
    const ModelWeights lp = std::move(merged).value();
    const int B = 2, T = 13, D = c.dim, l = 2;
    const ParamLayout layout = param_layout(lp, {l});
    std::vector<float> params(layout.total), grads(layout.total, 0.0f);
    gather_params(lp, layout, params.data());
    const RopeBuffers rope(lp.config, T);
    const auto x = randn(B * T * D, 61), dout = randn(B * T * D, 62);
    std::vector<float> out(B * T * D), dx(B * T * D);
    LayerActs acts;
    const LayerSpec spec = layer_spec(lp.layers[l], layout, params.data(), l);
    for (int b = 0; b < B; ++b) {
      layer_forward(lp.config, rope.table(), spec, x.data() + b * T * D, T, acts, out.data() + b * T * D);
      layer_backward(lp.config, rope.table(), spec, acts, dout.data() + b * T * D, dx.data() + b * T * D,
                     layer_grads(layout, grads.data(), l));
    }

    gpu::DeviceWeights weights;
    ASSERT_TRUE(weights.upload(lp, T).ok());
    Dev gparams(params), ggrads(grads.size()), gx(x), gout(out.size()), gdout(dout), gdx(dx.size());
    gpu::LayerActs gacts;
    gpu::LayerScratch scratch;
    const LayerSpec gspec = weights.layer(l, layout, gparams.ptr());
    ASSERT_TRUE(gpu::layer_forward(ctx, lp.config, weights.rope(), gspec, gx.ptr(), B, T, gacts, gout.ptr()).ok());
    ASSERT_TRUE(gpu::layer_backward(ctx, lp.config, weights.rope(), gspec, gacts, gdout.ptr(), gdx.ptr(),
                                    layer_grads(layout, ggrads.ptr(), l), scratch).ok());
    EXPECT_CLOSE(gout.get(), out, kTf32) << arch_name(c.arch);
    EXPECT_CLOSE(gdx.get(), dx, kTf32) << arch_name(c.arch);
    const std::vector<float> g = ggrads.get();
    for (const ParamTensor& t : layout.tensors) {
      const std::vector<float> a(g.begin() + t.offset, g.begin() + t.offset + t.numel());
      const std::vector<float> r(grads.begin() + t.offset, grads.begin() + t.offset + t.numel());
      EXPECT_LE(rel_err(a, r), kTf32) << arch_name(c.arch) << " " << t.name;
    }
  }
}

// The LP model's backward with the activations kept and recomputed (one TrainModel, recompute turned on after
// a kept round, which gives the kept buffers back): the same logits and gradients, bit for bit, except the
// qwen3 q/k norm gains whose gradients sum over rows with atomics (any order: fp32 rounding); both against
// the CPU TrainModel run per sequence. The weights go up as the healer's global stage puts them (the trained
// layer as gains only); held_bytes() must equal the estimates the memory rule reads.
TEST_F(TrainCuda, RecomputedGradientsMatchKeptAndCpu) {
  for (ModelConfig c : {test::tiny_llama_config(), test::tiny_qwen2_config(), test::tiny_qwen3_config()}) {
    SCOPED_TRACE(arch_name(c.arch));
    auto merged = apply_lp_plan(test::random_weights(c, 70), LpPlan{{2}});
    ASSERT_TRUE(merged.ok()) << merged.message();
    const ModelWeights lp = std::move(merged).value();
    const int B = 2, T = 13, V = c.vocab_size;
    const ParamLayout layout = param_layout(lp, wide_layers(lp));
    std::vector<float> params(layout.total);
    gather_params(lp, layout, params.data());
    std::vector<int32_t> tokens(B * T);
    std::mt19937_64 rng(71);
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % V);
    const std::vector<float> dlogits = randn(static_cast<size_t>(B) * T * V, 72);

    std::vector<float> cpu_logits(dlogits.size()), cpu_grads(layout.total, 0.0f), logits_b;
    TrainModel cpu(lp, layout, T, /*recompute=*/true);
    for (int b = 0; b < B; ++b) {
      cpu.forward(params.data(), tokens.data() + b * T, T, logits_b);
      std::copy(logits_b.begin(), logits_b.end(), cpu_logits.begin() + static_cast<int64_t>(b) * T * V);
      cpu.backward(params.data(), dlogits.data() + static_cast<int64_t>(b) * T * V, cpu_grads.data());
    }

    gpu::DeviceWeights weights;
    ASSERT_TRUE(weights.upload(lp, T, gpu::whole_model(lp, &layout)).ok());
    gpu::DeviceArray<int32_t> gtokens;
    ASSERT_TRUE(gtokens.upload(tokens).ok());
    Dev gparams(params);
    gpu::TrainModel model(weights, layout);
    std::vector<std::vector<float>> logits, grads;
    for (bool recompute : {false, true}) {
      model.set_recompute(recompute);
      Dev ggrads(params.size());
      ASSERT_TRUE(model.forward(ctx, gparams.ptr(), gtokens.get(), B, T).ok());
      const int64_t expected = recompute ? static_cast<int64_t>(lp.depth() - 2) * B * T * c.dim * 4
                                         : model.saved_bytes(gparams.ptr(), B, T);
      EXPECT_EQ(model.held_bytes(), expected) << "recompute " << recompute;
      logits.emplace_back(dlogits.size());
      ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(logits.back().data(), model.logits(), dlogits.size() * 4, cudaMemcpyDeviceToHost),
                cudaSuccess);
      ASSERT_EQ(cudaMemcpy(model.dlogits(), dlogits.data(), dlogits.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_TRUE(model.backward(ctx, gparams.ptr(), ggrads.ptr()).ok());
      grads.push_back(ggrads.get());
    }
    EXPECT_EQ(logits[0], logits[1]);
    EXPECT_CLOSE(logits[1], cpu_logits, kTf32);
    for (const ParamTensor& t : layout.tensors) {
      SCOPED_TRACE(t.name);
      auto slice = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + t.offset, v.begin() + t.offset + t.numel());
      };
      const bool atomics = t.name.find("_norm") != std::string::npos;
      if (atomics) EXPECT_LE(rel_err(slice(grads[1]), slice(grads[0])), kFp32);
      else EXPECT_EQ(slice(grads[1]), slice(grads[0]));
      // Through the logits' product and three layers' backward, TF32 products in a chain: twice one product's.
      EXPECT_LE(rel_err(slice(grads[1]), slice(cpu_grads)), 2 * kTf32);
    }
  }
}

// Part of a model on the device (the local stage's upload: the layers below a boundary, no head) gives the
// same hidden states as the whole model, bit for bit.
TEST_F(TrainCuda, PartialUploadGivesTheSameHiddenStates) {
  const ModelConfig c = test::tiny_llama_config();
  const ModelWeights w = test::random_weights(c, 80);
  const int B = 2, T = 9;
  std::vector<int32_t> tokens(B * T);
  std::mt19937_64 rng(81);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % c.vocab_size);
  gpu::DeviceArray<int32_t> gtokens;
  ASSERT_TRUE(gtokens.upload(tokens).ok());
  std::vector<std::vector<float>> states;
  for (bool whole : {true, false}) {
    gpu::DeviceWeights weights;
    ASSERT_TRUE(weights.upload(w, T, whole ? gpu::whole_model(w) : gpu::layers_below(w, 3)).ok());
    std::vector<gpu::DeviceArray<float>> out;
    gpu::ForwardWorkspace ws;
    ASSERT_TRUE(gpu::hidden_states(ctx, weights, gtokens.get(), B, T, {1, 3}, out, ws).ok());
    ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
    for (const gpu::DeviceArray<float>& o : out) {
      states.emplace_back(static_cast<size_t>(B) * T * c.dim);
      ASSERT_EQ(cudaMemcpy(states.back().data(), o.get(), states.back().size() * 4, cudaMemcpyDeviceToHost),
                cudaSuccess);
    }
  }
  EXPECT_EQ(states[0], states[2]);
  EXPECT_EQ(states[1], states[3]);
}

// 10 optimizer steps of the local and of the global stage on the tiny llama fixture (pair 0): the GPU's
// loss at every step against the CPU's, same data, same sequence order, same schedule. The run passes
// through every phase of the healer's uploads (held-out KL, the stage, held-out KL). The global stage runs
// again with --recompute on: its losses follow the kept run's (the same gradients; the norm's reduction
// order aside).
TEST(TrainCudaHeal, TenStepsMatchCpuLosses) {
  const std::string path = test::source_dir() + "/tests/fixtures/tiny_arch/llama.gguf";
  auto original = load_model(path, LpPlan{});
  ASSERT_TRUE(original.ok()) << original.message();
  DataOptions d;
  d.sequences = 40;
  d.heldout_sequences = 2;
  d.seq_len = 32;
  d.seed = 7;
  auto data = build_train_data(original->weights, original->tokenizer, d);
  ASSERT_TRUE(data.ok()) << data.message();
  for (Stage stage : {Stage::Local, Stage::Global}) {
    std::vector<float> cpu_losses, gpu_losses, recomputed_losses;
    HealOptions o;
    o.stages = {stage};
    o.batch = 4;
    o.lr = 1e-2f;
    o.seed = 3;
    auto run = [&](bool on_gpu, std::vector<float>& losses) {
      auto lp = load_model(path, LpPlan{{0}});
      ASSERT_TRUE(lp.ok()) << lp.message();
      o.on_step = [&](const StepReport& r) { losses.push_back(r.loss); };
      auto r = on_gpu ? heal_cuda(original->weights, lp->weights, *data, o, {3})  // micro-batches 3 + 1
                      : heal(original->weights, lp->weights, *data, o);
      ASSERT_TRUE(r.ok()) << r.message();
      EXPECT_EQ(r->recomputed, o.recompute == Recompute::On);  // Auto: the tiny model's activations fit
      EXPECT_GT(r->kl_before, 0.0);
    };
    run(false, cpu_losses);
    run(true, gpu_losses);
    if (stage == Stage::Global) {
      o.recompute = Recompute::On;
      run(true, recomputed_losses);
      ASSERT_EQ(recomputed_losses.size(), gpu_losses.size());
      for (size_t s = 0; s < gpu_losses.size(); ++s) {
        EXPECT_NEAR(recomputed_losses[s], gpu_losses[s], 1e-5 * gpu_losses[s]) << "step " << s + 1;
      }
    }
    ASSERT_EQ(gpu_losses.size(), 10u);
    ASSERT_EQ(cpu_losses.size(), 10u);
    for (int s = 0; s < 10; ++s) {
      EXPECT_NEAR(gpu_losses[s], cpu_losses[s], kSteps * cpu_losses[s]) << stage_name(stage) << " step " << s + 1;
    }
    EXPECT_LT(gpu_losses.back(), gpu_losses.front()) << stage_name(stage);
  }
}

// Random weights of a bench shape, quickly (llama2-7b is 6.7e9 floats: test::random_weights would take
// minutes of the device call): each tensor uniform with the variance of test::random_weights' normal ones
// (scale^2; gains around 1), from its own splitmix64 stream, the layers filled on parallel threads. Speed does
// not depend on the values.
ModelWeights bench_weights(const ModelConfig& c) {
  auto fill = [](std::vector<float>& v, int64_t n, float center, float scale, uint64_t seed) {
    v.resize(n);
    const float half_width = scale * std::sqrt(3.0f);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (float& f : v) {
      uint64_t z = (x += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      f = center + half_width * (static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
    }
  };
  auto matrix = [&](Matrix& m, int64_t rows, int64_t cols, float scale, uint64_t seed) {
    m.rows = rows;
    m.cols = cols;
    fill(m.data, rows * cols, 0.0f, scale, seed);
  };
  const int64_t D = c.dim, Hq = int64_t(c.n_heads) * c.head_dim, Hkv = int64_t(c.n_kv_heads) * c.head_dim;
  const float s_in = 1.0f / std::sqrt(float(D)), s_attn = 1.0f / std::sqrt(float(Hq)),
              s_ffn = 1.0f / std::sqrt(float(c.ffn_dim));
  ModelWeights w;
  w.config = c;
  w.layers.resize(c.n_layers);
  std::vector<std::thread> threads;
  for (int i = 0; i < c.n_layers; ++i) {
    threads.emplace_back([&, i] {
      LayerWeights& l = w.layers[i];
      const uint64_t seed = 100 * (i + 1);
      l.n_heads = c.n_heads;
      l.n_kv_heads = c.n_kv_heads;
      l.ffn_dim = c.ffn_dim;
      l.source_layers = {i};
      fill(l.attn_norm, D, 1.0f, 0.1f, seed);
      matrix(l.attn_q, Hq, D, s_in, seed + 1);
      matrix(l.attn_k, Hkv, D, s_in, seed + 2);
      matrix(l.attn_v, Hkv, D, s_in, seed + 3);
      if (c.qkv_bias) {
        fill(l.attn_q_bias, Hq, 0.0f, 0.1f, seed + 4);
        fill(l.attn_k_bias, Hkv, 0.0f, 0.1f, seed + 5);
        fill(l.attn_v_bias, Hkv, 0.0f, 0.1f, seed + 6);
      }
      if (c.qk_norm) {
        l.attn_q_norm.rows = c.n_heads;
        l.attn_k_norm.rows = c.n_kv_heads;
        l.attn_q_norm.cols = l.attn_k_norm.cols = c.head_dim;
        fill(l.attn_q_norm.data, Hq, 1.0f, 0.1f, seed + 7);
        fill(l.attn_k_norm.data, Hkv, 1.0f, 0.1f, seed + 8);
      }
      matrix(l.attn_out, D, Hq, s_attn, seed + 9);
      fill(l.ffn_norm, D, 1.0f, 0.1f, seed + 10);
      matrix(l.ffn_gate, c.ffn_dim, D, s_in, seed + 11);
      matrix(l.ffn_up, c.ffn_dim, D, s_in, seed + 12);
      matrix(l.ffn_down, D, c.ffn_dim, s_ffn, seed + 13);
    });
  }
  matrix(w.token_embd, c.vocab_size, D, 1.0f, 1);
  fill(w.output_norm, D, 1.0f, 0.1f, 2);
  if (!c.tied_embeddings) matrix(w.output, c.vocab_size, D, s_in, 3);
  for (std::thread& t : threads) t.join();
  return w;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// Throughput, not correctness (run with --gtest_also_run_disabled_tests; tools/gpu/heal_on_gpu.sh does):
// stages of `duet heal --device cuda` on random weights of a bench shape, batch 8 x 256 tokens, micro-batch
// 8: the shapes bench/heal_torch_peer.py times. The environment picks the run:
//   DUET_HEAL_SHAPE   a bench shape (runtime/bench_shapes.h; default smollm2-135m)
//   DUET_HEAL_PAIRS   its LP plan, "4,6,17,25" or "14:28" (default plans/smollm2_135m_searched_4.txt's for
//                     smollm2-135m, else the shape's first bench plan)
//   DUET_HEAL_STAGES  default local,global for smollm2-135m, local for the others (a 7B model's global
//                     stage needs both float32 models and the optimizer state: more than 80 GB)
//   DUET_HEAL_STEPS   optimizer steps per stage (default 24; the first 4 are warmup, not timed)
// One JSON line per stage: tokens/s over the timed steps and the peak device memory in use (total - free by
// cudaMemGetInfo after every step: weights, optimizer state, activations, the CUDA context).
TEST(TrainCudaBench, DISABLED_StagesTokensPerSecond) {
  const std::string shape_name = env_or("DUET_HEAL_SHAPE", "smollm2-135m");
  auto shape = find_bench_shape(shape_name);
  ASSERT_TRUE(shape.ok()) << shape.message();
  const bool smollm2 = shape_name == "smollm2-135m";
  const std::string pairs = env_or("DUET_HEAL_PAIRS", smollm2 ? "4,6,17,25" : shape->lp_plans.front());
  auto plan = parse_lp_plan_text(pairs);
  ASSERT_TRUE(plan.ok()) << plan.message();
  ASSERT_TRUE(validate_lp_plan(*plan, shape->config.n_layers).ok()) << pairs;
  auto stages = parse_stages(env_or("DUET_HEAL_STAGES", smollm2 ? "local,global" : "local"));
  ASSERT_TRUE(stages.ok()) << stages.message();
  const int T = 256, batch = 8, steps = std::atoi(env_or("DUET_HEAL_STEPS", "24").c_str());
  ASSERT_GE(steps, 6) << "DUET_HEAL_STEPS";
  const auto build_start = std::chrono::steady_clock::now();
  const ModelWeights original = bench_weights(shape->config);
  const double build_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - build_start).count();
  TrainData data;
  std::mt19937_64 rng(2);
  for (int i = 0; i < batch * steps; ++i) {
    std::vector<int32_t> seq(T);
    for (int32_t& t : seq) t = static_cast<int32_t>(rng() % shape->config.vocab_size);
    data.train.push_back(std::move(seq));
  }
  size_t free = 0, total = 0;
  for (Stage stage : *stages) {
    const auto stage_start = std::chrono::steady_clock::now();
    // The same weights again (bench_weights is deterministic), moved into the plan: no copy of the original.
    auto lp = apply_lp_plan(bench_weights(shape->config), *plan);
    ASSERT_TRUE(lp.ok()) << lp.message();
    HealOptions o;
    o.stages = {stage};
    o.batch = batch;
    std::vector<StepReport> reports;
    size_t peak = 0;
    o.on_step = [&](const StepReport& r) {
      reports.push_back(r);
      if (cudaMemGetInfo(&free, &total) == cudaSuccess) peak = std::max(peak, total - free);
    };
    auto r = heal_cuda(original, *lp, data, o, {8});
    ASSERT_TRUE(r.ok()) << r.message();
    ASSERT_EQ(reports.size(), static_cast<size_t>(steps));
    // Steps 5.. only: the first ones allocate, pick cuBLAS algorithms and warm the caches.
    const StepReport& warm = reports[4];
    const StepReport& last = reports.back();
    const double seconds_warm = static_cast<double>(warm.step) * batch * T / warm.tokens_per_second;
    const double seconds_last = static_cast<double>(last.step) * batch * T / last.tokens_per_second;
    const double tps = static_cast<double>(last.step - warm.step) * batch * T / (seconds_last - seconds_warm);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - stage_start).count();
    std::printf("{\"engine\": \"duet\", \"stage\": \"%s\", \"shape\": \"%s\", \"pairs\": \"%s\", "
                "\"batch\": %d, \"seq_len\": %d, \"ms_per_step\": %.3f, \"tokens_per_s\": %.0f, "
                "\"peak_gib\": %.2f, \"gpu_gib\": %.2f, \"recomputed\": %s, \"weights_build_s\": %.1f, "
                "\"stage_wall_s\": %.1f}\n",
                stage_name(stage), shape_name.c_str(), pairs.c_str(), batch, T, 1e3 * batch * T / tps, tps,
                peak / 1073741824.0, total / 1073741824.0, r->recomputed ? "true" : "false", build_seconds, wall);
    std::fflush(stdout);
  }
}

}  // namespace
}  // namespace duet::train
