// Rotary position embedding. The two RopeStyles differ only in which two
// dimensions of a head form a rotated pair (see model/config.h).
#include <cmath>

#include "kernels/ops.h"

namespace duet::cpu {

void rope_table_fill(const ModelConfig& config, int positions, float* cos, float* sin) {
  const int half = config.head_dim / 2;
  for (int i = 0; i < half; ++i) {
    double freq = std::pow(static_cast<double>(config.rope_theta), -2.0 * i / config.head_dim);
    if (!config.rope_freq_factors.empty()) freq /= config.rope_freq_factors[i];
    for (int p = 0; p < positions; ++p) {
      const double angle = p * freq;
      cos[static_cast<int64_t>(p) * half + i] = static_cast<float>(std::cos(angle));
      sin[static_cast<int64_t>(p) * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

void rope(float* x, int T, int H, int pos0, const RopeTable& table) {
  const int Dh = table.head_dim, half = Dh / 2;
  // Interleaved pairs (2i, 2i+1); HalfSplit pairs (i, i+Dh/2).
  const int stride = table.style == RopeStyle::Interleaved ? 2 : 1;
  const int partner = table.style == RopeStyle::Interleaved ? 1 : half;
  for (int t = 0; t < T; ++t) {
    const float* c = table.cos + static_cast<int64_t>(pos0 + t) * half;
    const float* s = table.sin + static_cast<int64_t>(pos0 + t) * half;
    for (int h = 0; h < H; ++h) {
      float* head = x + (static_cast<int64_t>(t) * H + h) * Dh;
      for (int i = 0; i < half; ++i) {
        float* a = head + i * stride;
        const float x0 = a[0], x1 = a[partner];
        a[0] = x0 * c[i] - x1 * s[i];
        a[partner] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

}  // namespace duet::cpu
