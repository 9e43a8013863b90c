// In-process microbenchmark of the CPU matmul kernels on SmolLM2-135M's shapes:
// matmul_packed (float32 activations) vs matmul_q8 (int8 activations, VNNI) vs
// OpenBLAS sgemm, best of 5 rounds of REPS calls each, so the ratios hold even
// when other processes share the machine (absolute times do not).
//
//   cmake --build build --target duet_core
//   g++ -O2 -march=native -fopenmp -std=c++20 -Isrc bench/cpu_matmul_micro.cpp build/libduet_core.a -lopenblas \
//       -o build/cpu_matmul_micro
//   OMP_NUM_THREADS=1 build/cpu_matmul_micro 1 300    # T = 1 (decode)
//   OMP_NUM_THREADS=1 build/cpu_matmul_micro 64 20    # T = 64 (prefill, scoring)
#include <omp.h>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include <cstring>
#include "core/half.h"
#include "kernels/ops.h"
using namespace duet;
// Random blocks with fixed scales (the kernels' speed does not depend on the values).
PackedRows rnd(DType type, int N, int K, std::mt19937& rng) {
  const int64_t bb = type == DType::Q4_1 ? 20 : type == DType::Q4_0 ? 18 : 34, blocks = K / 32;
  PackedRows w{type, blocks * bb, std::vector<uint8_t>(size_t(N) * blocks * bb)};
  for (int64_t b = 0; b < int64_t(N) * blocks; ++b) {
    uint8_t* block = w.bytes.data() + b * bb;
    for (int64_t j = 0; j < bb; ++j) block[j] = uint8_t(rng());
    const uint16_t d = f32_to_fp16(0.05f), m = f32_to_fp16(-0.03f);
    std::memcpy(block, &d, 2);
    if (type == DType::Q4_1) std::memcpy(block + 2, &m, 2);
  }
  return w;
}
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  int T = argc > 1 ? atoi(argv[1]) : 1;
  int reps = argc > 2 ? atoi(argv[2]) : 200;
  std::mt19937 rng(1);
  struct S { const char* name; DType t; int N, K; } shapes[] = {
    {"q 576x576", DType::Q4_1, 576, 576}, {"k 192x576", DType::Q4_1, 192, 576}, {"up 1536x576", DType::Q4_1, 1536, 576},
    {"down 576x1536", DType::Q4_1, 576, 1536}, {"out 49152x576 q8_0", DType::Q8_0, 49152, 576}};
  for (auto& s : shapes) {
    PackedRows w = rnd(s.t, s.N, s.K, rng);
    const cpu::Q8Tiles tiles = cpu::q8_tiles(w, s.N, s.K);  // built once per matrix, as CpuModel does
    std::vector<float> x(size_t(T) * s.K), y(size_t(T) * s.N), wf(size_t(s.N) * s.K, 0.01f);
    for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    int r = s.N > 10000 ? reps / 20 + 1 : reps;
    double tp = 1e9, tq = 1e9, ts = 1e9;
    for (int round = 0; round < 5; ++round) {
      double t0 = now(); for (int i = 0; i < r; ++i) cpu::matmul_packed(x.data(), 1, w, nullptr, y.data(), T, s.N, s.K);
      double t1 = now(); for (int i = 0; i < r; ++i) cpu::matmul_q8(x.data(), 1, tiles, nullptr, y.data(), T);
      double t2 = now(); if (T > 1) for (int i = 0; i < r; ++i) cpu::matmul(x.data(), wf.data(), nullptr, y.data(), T, s.N, s.K);
      double t3 = now();
      tp = std::min(tp, (t1 - t0) / r); tq = std::min(tq, (t2 - t1) / r); ts = std::min(ts, (t3 - t2) / r);
    }
    std::printf("%-22s T=%d thr=%d packed %8.1f us  q8 %8.1f us  packed/q8 %.2f", s.name, T, omp_get_max_threads(),
                tp * 1e6, tq * 1e6, tp / tq);
    if (T > 1) std::printf("  sgemm %8.1f us  sgemm/q8 %.2f", ts * 1e6, ts / tq);
    std::printf("\n");
  }
}
