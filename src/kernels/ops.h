// CPU reference kernels: one declaration and one-line contract per op.
// float32 throughout, row-major, last dim contiguous. The CUDA backend has the
// same ops under kernels/cuda/ with the same names.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace duet::cpu {

// rms_norm: y[t,:] = x[t,:] * rsqrt(mean(x[t,:]^2) + eps) * w. x,y [T,D]; w [D] or null (gain 1); y may alias x.
void rms_norm(const float* x, const float* w, float* y, int T, int D, float eps);

// rms_norm_heads: per head, x[t,h,:] = x[t,h,:] * rsqrt(mean(x[t,h,:]^2) + eps) * w[h,:]. x [T,H,Dh] in place; w [H,Dh].
void rms_norm_heads(float* x, const float* w, int T, int H, int Dh, float eps);

// matmul: y[T,N] = x[T,K] W[N,K]^T (+ bias[N] when non-null). OpenBLAS sgemm; y must not alias x.
void matmul(const float* x, const float* w, const float* bias, float* y, int T, int N, int K);

// matmul_packed: y[t,n] = sum_k decode(W)[n,k] * x[g,t,k] (+ bias[n]) with g = n / (N/G): row group g
// reads input group g. x [G,T,K] f32; W N rows in any checkpoint encoding (decoded exactly); fp32 accumulate.
// For small T (decode): each row is read once and dotted with all T inputs; y[t,:] does not depend on T.
void matmul_packed(const float* x, int G, const PackedRows& w, const float* bias, float* y, int T, int N, int K);

// matmul_q8 runs on Q4_0/Q4_1/Q8_0 rows repacked into 16-row tiles (q8_tiles, built once per matrix and kept by
// the caller: repacking costs as much as a scoring call saves). N rows of K (K % 32 == 0); bytes [N/16 up, K/32, ...].
struct Q8Tiles {
  static constexpr int kRows = 16;
  DType type = DType::Q8_0;
  int N = 0, K = 0;
  std::vector<uint8_t> bytes;
};
// q8_tiles: w's N rows of K in the tiled layout of matmul_q8 (a copy; w may be dropped). Needs matmul_q8_supported.
Q8Tiles q8_tiles(const PackedRows& w, int N, int K);
// matmul_q8_supported: AVX-512 VNNI is present, w is Q4_0/Q4_1/Q8_0 and K % 32 == 0.
bool matmul_q8_supported(const PackedRows& w, int K);

// matmul_q8: matmul_packed with each 32-block of x rounded to int8 (q = round(x * 127 / max|x|), as llama.cpp's Q8_1)
// and integer block dot products (AVX-512 VNNI); int32 within a block, fp32 across blocks; y[t,:] does not depend
// on T or on the other inputs. x [G,T,K]; y [T,N]; row group g = n / (N/G) reads input group g.
void matmul_q8(const float* x, int G, const Q8Tiles& w, const float* bias, float* y, int T);

// One projection of a shared input: y [T,N] = x W^T (+ bias [N] when non-null), N = w->N.
struct Q8Projection {
  const Q8Tiles* w = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
};
// matmul_q8_shared: matmul_q8 of one input x [G,T,K] with each of `count` projections (each y equals matmul_q8's,
// bit for bit); x is quantized once and every tile runs in one parallel region.
void matmul_q8_shared(const float* x, int G, const Q8Projection* projections, int count, int T);

// RopeTable: cos/sin of pos * theta^(-2i/Dh) / freq_factor[i] for pos in [0,S), i in [0,Dh/2).
struct RopeTable {
  int head_dim = 0;
  int positions = 0;
  RopeStyle style = RopeStyle::HalfSplit;
  const float* cos = nullptr;  // [S, Dh/2], owned by the caller
  const float* sin = nullptr;  // [S, Dh/2]
};
// rope_table_fill: fills cos/sin ([S, Dh/2] each) for the config's theta and frequency factors.
void rope_table_fill(const ModelConfig& config, int positions, float* cos, float* sin);

// rope: rotates x [T,H,Dh] in place; row t is at position pos0 + t (< table.positions).
void rope(float* x, int T, int H, int pos0, const RopeTable& table);

// attention_causal: out[t,h,:] = softmax_s(q[t,h,:] . k[s,g,:] / sqrt(Dh)) v[s,g,:] over s <= pos0 + t,
// g = h / (H/Hkv). q,out [T,H,Dh]; k,v [S,Hkv,Dh] holding positions [0, pos0+T).
void attention_causal(const float* q, const float* k, const float* v, float* out, int T, int pos0, int H,
                      int Hkv, int Dh);

// silu_mul: out[i] = gate[i] * sigmoid(gate[i]) * up[i] for i in [0,n). out may alias gate.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

// sum_exp_shifted: sum_i exp(double(x[i]) - shift) for i in [0,n), in double; needs x[i] <= shift (a log-softmax's
// max); within ~1e-15 relative of the exact sum (not summed in index order).
double sum_exp_shifted(const float* x, int64_t n, float shift);

// add_inplace: y[i] += x[i] for i in [0,n).
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace duet::cpu
