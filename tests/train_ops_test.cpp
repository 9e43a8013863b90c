// Training ops: every backward against central finite differences of its
// forward, on awkward sizes (odd widths, GQA groups of 3, T = 1).
//
// Each test builds a scalar L = sum_i r_i * y_i with fixed random r, so
// dL/dy = r, runs the op's backward with dy = r and compares every input's
// gradient with (L(x + h e_j) - L(x - h e_j)) / 2h, L summed in double.
// Tolerance (GradientTolerance defaults): |analytic - numeric| <= 2e-3 + 1e-2 |numeric|. With h = 1e-2
// the truncation error of a smooth op is O(h^2 * f''') ~ 1e-4 relative, and
// float32 rounding of L (a few hundred O(1) terms, ~1e-7 relative each)
// divided by 2h adds ~1e-4 absolute; a wrong sign, index or factor is off by O(1).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "train_test_support.h"
#include "kernels/ops.h"
#include "train/losses.h"
#include "train/model.h"
#include "train/ops.h"

namespace duet::train {
namespace {

class TrainLosses : public test::SingleThreadedTest {};
class TrainOps : public test::SingleThreadedTest {};

using test::dot;
using test::expect_gradient;

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST_F(TrainOps, RmsNormWithAndWithoutGain) {
  const int T = 5, D = 13;
  for (bool with_gain : {false, true}) {
    std::vector<float> x = randn(T * D, 1), r = randn(T * D, 2), g = randn(D, 3, 0.3f);
    for (float& v : g) v += 1.0f;
    const float* gain = with_gain ? g.data() : nullptr;
    std::vector<float> y(T * D), rstd(T), dx(T * D, 0.0f);
    auto loss = [&] {
      rms_norm_forward(x.data(), gain, y.data(), rstd.data(), T, D, 1e-5f);
      return dot(y, r);
    };
    loss();
    // The forward matches the inference kernel exactly (same arithmetic).
    std::vector<float> ref(T * D);
    cpu::rms_norm(x.data(), gain, ref.data(), T, D, 1e-5f);
    EXPECT_EQ(y, ref);
    rms_norm_backward(r.data(), x.data(), gain, rstd.data(), dx.data(), T, D);
    expect_gradient(with_gain ? "rms_norm(gain) dx" : "rms_norm dx", x, dx, loss);
  }
}

TEST_F(TrainOps, RmsNormHeads) {
  const int T = 3, H = 3, Dh = 6;
  std::vector<float> x = randn(T * H * Dh, 4), w = randn(H * Dh, 5, 0.3f), r = randn(T * H * Dh, 6);
  for (float& v : w) v += 1.0f;
  std::vector<float> y(x.size()), rstd(T * H), dx(x.size(), 0.0f), dw(w.size(), 0.0f);
  auto loss = [&] {
    rms_norm_heads_forward(x.data(), w.data(), y.data(), rstd.data(), T, H, Dh, 1e-6f);
    return dot(y, r);
  };
  loss();
  std::vector<float> ref = x;
  cpu::rms_norm_heads(ref.data(), w.data(), T, H, Dh, 1e-6f);
  EXPECT_EQ(y, ref);
  rms_norm_heads_backward(r.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), T, H, Dh);
  expect_gradient("rms_norm_heads dx", x, dx, loss);
  expect_gradient("rms_norm_heads dw", w, dw, loss);
}

TEST_F(TrainOps, MatmulWithBias) {
  for (int T : {1, 7}) {
    const int N = 19, K = 13;
    std::vector<float> x = randn(T * K, 7), w = randn(N * K, 8), b = randn(N, 9), r = randn(T * N, 10);
    std::vector<float> y(T * N), dx(x.size(), 0.0f), dw(w.size(), 0.0f), db(N, 0.0f);
    auto loss = [&] {
      matmul_forward(x.data(), w.data(), b.data(), y.data(), T, N, K);
      return dot(y, r);
    };
    loss();
    matmul_backward(r.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), T, N, K);
    expect_gradient("matmul dx", x, dx, loss);
    expect_gradient("matmul dw", w, dw, loss);
    expect_gradient("matmul dbias", b, db, loss);
  }
}

TEST_F(TrainOps, RopeBothPairings) {
  const int T = 5, H = 3, Dh = 8;
  for (RopeStyle style : {RopeStyle::HalfSplit, RopeStyle::Interleaved}) {
    ModelConfig c;
    c.head_dim = Dh;
    c.rope_theta = 100.0f;  // large angles within 5 positions
    c.rope_style = style;
    const RopeBuffers rope(c, T);
    std::vector<float> x = randn(T * H * Dh, 11), r = randn(T * H * Dh, 12), y;
    auto loss = [&] {
      y = x;
      rope_forward(y.data(), T, H, rope.table());
      return dot(y, r);
    };
    loss();
    std::vector<float> dx = r;
    rope_backward(dx.data(), T, H, rope.table());
    expect_gradient(style == RopeStyle::HalfSplit ? "rope(half-split) dx" : "rope(interleaved) dx", x, dx, loss);
  }
}

TEST_F(TrainOps, CausalGqaAttention) {
  const int T = 7, H = 6, Hkv = 2, Dh = 5;
  std::vector<float> q = randn(T * H * Dh, 13), k = randn(T * Hkv * Dh, 14), v = randn(T * Hkv * Dh, 15),
                     r = randn(T * H * Dh, 16);
  std::vector<float> out(q.size()), att(H * T * T);
  auto loss = [&] {
    attention_forward(q.data(), k.data(), v.data(), out.data(), att.data(), T, H, Hkv, Dh);
    return dot(out, r);
  };
  loss();
  std::vector<float> ref(q.size());
  cpu::attention_causal(q.data(), k.data(), v.data(), ref.data(), T, 0, H, Hkv, Dh);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-6) << "forward vs cpu::attention_causal at " << i;
  std::vector<float> dq(q.size(), 0.0f), dk(k.size(), 0.0f), dv(v.size(), 0.0f);
  attention_backward(r.data(), q.data(), k.data(), v.data(), att.data(), dq.data(), dk.data(), dv.data(), T, H, Hkv, Dh);
  expect_gradient("attention dq", q, dq, loss);
  expect_gradient("attention dk", k, dk, loss);
  expect_gradient("attention dv", v, dv, loss);
}

TEST_F(TrainOps, SwigluAndResidual) {
  const int n = 37;
  std::vector<float> gate = randn(n, 17, 2.0f), up = randn(n, 18), r = randn(n, 19), out(n);
  auto loss = [&] {
    swiglu_forward(gate.data(), up.data(), out.data(), n);
    return dot(out, r);
  };
  loss();
  std::vector<float> dgate(n, 0.0f), dup(n, 0.0f);
  swiglu_backward(r.data(), gate.data(), up.data(), dgate.data(), dup.data(), n);
  expect_gradient("swiglu dgate", gate, dgate, loss);
  expect_gradient("swiglu dup", up, dup, loss);

  std::vector<float> a = randn(n, 20), b = randn(n, 21), sum(n), da(n, 0.0f), db(n, 0.0f);
  auto loss2 = [&] {
    residual_forward(a.data(), b.data(), sum.data(), n);
    return dot(sum, r);
  };
  loss2();
  residual_backward(r.data(), da.data(), db.data(), n);
  expect_gradient("residual da", a, da, loss2);
  expect_gradient("residual db", b, db, loss2);
}

TEST_F(TrainLosses, MseKlCrossEntropy) {
  const int T = 4, V = 11, D = 9;
  std::vector<float> y = randn(T * D, 22), target = randn(T * D, 23), dy(T * D, 0.0f);
  auto mse = [&] { return static_cast<double>(mse_forward(y.data(), target.data(), T * D)); };
  mse_backward(y.data(), target.data(), T * D, 1.0f, dy.data());
  expect_gradient("mse dy", y, dy, mse);
  EXPECT_EQ(mse_forward(target.data(), target.data(), T * D), 0.0f);

  std::vector<float> p = randn(T * V, 24, 2.0f), q = randn(T * V, 25, 2.0f), dq(T * V, 0.0f);
  auto kl = [&] { return static_cast<double>(kl_forward(p.data(), q.data(), T, V)); };
  EXPECT_GT(kl(), 0.0);
  EXPECT_NEAR(kl_forward(p.data(), p.data(), T, V), 0.0, 1e-6);
  kl_backward(p.data(), q.data(), T, V, 1.0f, dq.data());
  expect_gradient("kl dq", q, dq, kl);

  const std::vector<int32_t> tokens{3, 0, 10, 7};
  std::vector<float> dl(T * V, 0.0f);
  auto ce = [&] { return static_cast<double>(cross_entropy_forward(q.data(), tokens.data(), T, V)); };
  // Uniform logits give log V exactly.
  std::vector<float> flat(T * V, 0.5f);
  EXPECT_NEAR(cross_entropy_forward(flat.data(), tokens.data(), T, V), std::log(static_cast<double>(V)), 1e-6);
  cross_entropy_backward(q.data(), tokens.data(), T, V, 1.0f, dl.data());
  expect_gradient("cross_entropy dlogits", q, dl, ce);
}

}  // namespace
}  // namespace duet::train
