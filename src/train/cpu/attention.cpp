// Causal grouped-query attention with the probabilities saved for the backward
// (llm.c's layout, att [H,T,T]): training sequences are short (T of a few
// hundred), so H*T*T floats per layer is affordable and the backward needs no
// recomputation.
//
// Backward, per query row (h, t), with scale = 1/sqrt(Dh):
//   datt[s] = dout[t,h] . v[s,g]            dv[s,g] += att[s] dout[t,h]
//   dpre[s] = att[s] (datt[s] - sum_s' att[s'] datt[s'])
//   dq[t,h] += scale sum_s dpre[s] k[s,g]    dk[s,g] += scale dpre[s] q[t,h]
#include <algorithm>
#include <cmath>
#include <vector>

#include "train/ops.h"

namespace duet::train {
namespace {

// Below T^2 H Dh = 2^18 (causal: half of it multiply-adds) a second thread costs more to wake than it saves.
bool worth_threads(int T, int H, int Dh) { return static_cast<int64_t>(T) * T * H * Dh >= (int64_t(1) << 18); }

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* out, float* att, int T, int H, int Hkv,
                       int Dh) {
  const int group = H / Hkv;
  const int64_t qs = static_cast<int64_t>(H) * Dh, ks = static_cast<int64_t>(Hkv) * Dh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
#pragma omp parallel for collapse(2) schedule(dynamic, 4) if (worth_threads(T, H, Dh))
  for (int h = 0; h < H; ++h) {
    for (int t = 0; t < T; ++t) {
      const float* qrow = q + t * qs + static_cast<int64_t>(h) * Dh;
      float* a = att + (static_cast<int64_t>(h) * T + t) * T;
      const int g = h / group;
      float max_score = -INFINITY;
      for (int s = 0; s <= t; ++s) {
        const float* krow = k + s * ks + static_cast<int64_t>(g) * Dh;
        float dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < Dh; ++d) dot += qrow[d] * krow[d];
        a[s] = dot * scale;
        max_score = std::max(max_score, a[s]);
      }
      float sum = 0;
      for (int s = 0; s <= t; ++s) {
        a[s] = std::exp(a[s] - max_score);
        sum += a[s];
      }
      float* orow = out + t * qs + static_cast<int64_t>(h) * Dh;
      std::fill(orow, orow + Dh, 0.0f);
      for (int s = 0; s <= t; ++s) {
        a[s] /= sum;
        const float* vrow = v + s * ks + static_cast<int64_t>(g) * Dh;
#pragma omp simd
        for (int d = 0; d < Dh; ++d) orow[d] += a[s] * vrow[d];
      }
    }
  }
}

void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* att, float* dq,
                        float* dk, float* dv, int T, int H, int Hkv, int Dh) {
  const int group = H / Hkv;
  const int64_t qs = static_cast<int64_t>(H) * Dh, ks = static_cast<int64_t>(Hkv) * Dh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  // One thread per KV head: the query heads of a group are the only writers of its dk/dv rows.
#pragma omp parallel if (worth_threads(T, H, Dh))
  {
    std::vector<float> dpre(T);
#pragma omp for schedule(dynamic, 1)
    for (int g = 0; g < Hkv; ++g) {
      for (int h = g * group; h < (g + 1) * group; ++h) {
        for (int t = 0; t < T; ++t) {
          const float* a = att + (static_cast<int64_t>(h) * T + t) * T;
          const float* dorow = dout + t * qs + static_cast<int64_t>(h) * Dh;
          const float* qrow = q + t * qs + static_cast<int64_t>(h) * Dh;
          float* dqrow = dq + t * qs + static_cast<int64_t>(h) * Dh;
          float dot_sum = 0;
          for (int s = 0; s <= t; ++s) {
            const float* vrow = v + s * ks + static_cast<int64_t>(g) * Dh;
            float* dvrow = dv + s * ks + static_cast<int64_t>(g) * Dh;
            float datt = 0;
#pragma omp simd reduction(+ : datt)
            for (int d = 0; d < Dh; ++d) {
              datt += dorow[d] * vrow[d];
              dvrow[d] += a[s] * dorow[d];
            }
            dpre[s] = datt;
            dot_sum += a[s] * datt;
          }
          for (int s = 0; s <= t; ++s) {
            const float ds = a[s] * (dpre[s] - dot_sum) * scale;
            const float* krow = k + s * ks + static_cast<int64_t>(g) * Dh;
            float* dkrow = dk + s * ks + static_cast<int64_t>(g) * Dh;
#pragma omp simd
            for (int d = 0; d < Dh; ++d) {
              dqrow[d] += ds * krow[d];
              dkrow[d] += ds * qrow[d];
            }
          }
        }
      }
    }
  }
}

}  // namespace duet::train
