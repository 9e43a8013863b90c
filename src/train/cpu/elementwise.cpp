// Pointwise ops: SwiGLU's activation and residual adds.
// silu(a) = a s(a) with s the sigmoid; silu'(a) = s(a) (1 + a (1 - s(a))).
#include <cmath>

#include "train/ops.h"

namespace duet::train {

void swiglu_forward(const float* gate, const float* up, float* out, int64_t n) { cpu::silu_mul(gate, up, out, n); }

void swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-gate[i]));
    dgate[i] += dout[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
    dup[i] += dout[i] * gate[i] * s;
  }
}

void residual_forward(const float* a, const float* b, float* out, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void residual_backward(const float* dout, float* da, float* db, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

}  // namespace duet::train
