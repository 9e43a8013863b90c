// Causal grouped-query attention over a KV cache, one (token, head) row at a
// time: scores, softmax and the weighted sum of V never leave a per-thread
// buffer of one row, so memory stays O(S) per thread for any prompt length.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace duet::cpu {

void attention_causal(const float* q, const float* k, const float* v, float* out, int T, int pos0, int H,
                      int Hkv, int Dh) {
  const int group = H / Hkv;
  const int64_t kv_stride = static_cast<int64_t>(Hkv) * Dh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  // A decode step's few heads over a short cache finish before a second thread would wake.
  const int64_t work = static_cast<int64_t>(T) * H * (pos0 + T) * Dh;
#pragma omp parallel if (work >= (int64_t(1) << 18))
  {
    std::vector<float> scores(pos0 + T);
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        const float* qrow = q + (static_cast<int64_t>(t) * H + h) * Dh;
        const int g = h / group;
        const int n = pos0 + t + 1;  // keys visible to this token
        float max_score = -INFINITY;
        for (int s = 0; s < n; ++s) {
          const float* krow = k + s * kv_stride + static_cast<int64_t>(g) * Dh;
          float dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int d = 0; d < Dh; ++d) dot += qrow[d] * krow[d];
          scores[s] = dot * scale;
          max_score = std::max(max_score, scores[s]);
        }
        float sum = 0;
        for (int s = 0; s < n; ++s) {
          scores[s] = std::exp(scores[s] - max_score);
          sum += scores[s];
        }
        float* orow = out + (static_cast<int64_t>(t) * H + h) * Dh;
        std::fill(orow, orow + Dh, 0.0f);
        for (int s = 0; s < n; ++s) {
          const float p = scores[s] / sum;
          const float* vrow = v + s * kv_stride + static_cast<int64_t>(g) * Dh;
#pragma omp simd
          for (int d = 0; d < Dh; ++d) orow[d] += p * vrow[d];
        }
      }
    }
  }
}

}  // namespace duet::cpu
