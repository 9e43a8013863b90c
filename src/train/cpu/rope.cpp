// RoPE forward/backward. The rotation R(pos) is orthogonal, so the backward
// applies R^T = R(-angle) to the gradient: the forward with sin negated.
#include "train/ops.h"

namespace duet::train {
namespace {

void rotate(float* x, int T, int H, const cpu::RopeTable& table, float sin_sign) {
  const int Dh = table.head_dim, half = Dh / 2;
  // Interleaved pairs (2i, 2i+1); HalfSplit pairs (i, i+Dh/2) (model/config.h).
  const int stride = table.style == RopeStyle::Interleaved ? 2 : 1;
  const int partner = table.style == RopeStyle::Interleaved ? 1 : half;
  for (int t = 0; t < T; ++t) {
    const float* c = table.cos + static_cast<int64_t>(t) * half;
    const float* s = table.sin + static_cast<int64_t>(t) * half;
    for (int h = 0; h < H; ++h) {
      float* head = x + (static_cast<int64_t>(t) * H + h) * Dh;
      for (int i = 0; i < half; ++i) {
        float* a = head + i * stride;
        const float x0 = a[0], x1 = a[partner], sn = sin_sign * s[i];
        a[0] = x0 * c[i] - x1 * sn;
        a[partner] = x0 * sn + x1 * c[i];
      }
    }
  }
}

}  // namespace

void rope_forward(float* x, int T, int H, const cpu::RopeTable& table) { cpu::rope(x, T, H, 0, table); }

void rope_backward(float* dx, int T, int H, const cpu::RopeTable& table) { rotate(dx, T, H, table, -1.0f); }

}  // namespace duet::train
