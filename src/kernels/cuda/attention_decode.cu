// attention_decode_split_kv: flash-decoding over a static KV cache.
//
// One block per (key chunk, KV head, query). The block reads only the valid
// keys of its chunk (positions < pos+1), once, for all H/Hkv query heads that
// share the KV head (GQA). Inside the block a "key group" of Dh/8 lanes owns one
// key at a time with 16-byte loads; each group keeps an online softmax, groups
// are merged through shared memory, and the block writes one partial
// (max, sum, unnormalised acc). The chunks of each (query, head) are then merged
// by attention_merge_chunks_kernel, or, in the wide variant, by the chunk
// kernel's last block to finish. Chunks past the valid length exit at once, so a
// grid sized for the full cache is fine under a CUDA graph whose positions move.
//
// Two variants (see launch()): the narrow one (128 threads, 2 keys per key group
// in flight, merge kernel) for small layers and large GQA groups; the wide one
// (256 threads, 4 keys per key group, last-block merge, first round of keys
// loaded before the wait) for GQA groups <= 2 of large layers, whose cache is the
// most bytes per query head (llama2-7b batch 1: 16.8 MB per layer), so the chunk
// kernel is latency-bound on its loads.
#include <cmath>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ void to_float8(const uint4& u, float* f) {
  const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(p[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// Merges chunks [0, used) of (query i, head h) into out, for dim d: each chunk's (max, sum) rescaled to
// the common max. The partials go out kBatch chunks at a time, all loads of a batch before any
// arithmetic, so a merge of up to kBatch chunks is one L2 round trip; batches combine with a running
// max. (Two passes, max then sum, each unrolled by 8, cost ~6 round trips at 17 chunks; a single pass
// with a running max per chunk is one round trip per chunk: smollm2-135m 0.506 -> 0.530 ms.)
// __ldcg: in the last-block merge the partials were written by other blocks of the same grid.
template <int kBatch>
__device__ __forceinline__ void merge_chunks(const AttentionDecodeArgs& a, int n_chunks, int used, int i, int h,
                                             int d) {
  const int64_t part0 = (static_cast<int64_t>(i) * a.H + h) * n_chunks;
  const float2* ml = reinterpret_cast<const float2*>(a.part_ml) + part0;  // (max, sum) per chunk
  const float* acc = a.part_acc + part0 * a.Dh + d;
  float run_max = -INFINITY, sum = 0, out = 0;
  for (int c0 = 0; c0 < used; c0 += kBatch) {
    float2 p[kBatch];
    float v[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const bool valid = c0 + j < used;
      p[j] = valid ? __ldcg(ml + c0 + j) : make_float2(-INFINITY, 0.0f);
      v[j] = valid ? __ldcg(acc + static_cast<int64_t>(c0 + j) * a.Dh) : 0.0f;
    }
    float mx = run_max;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) mx = fmaxf(mx, p[j].x);
    const float corr = exp2f(run_max - mx);  // 0 on the first batch (every valid chunk's max is finite)
    sum *= corr;
    out *= corr;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const float f = exp2f(p[j].x - mx);  // 0 past `used`
      sum += p[j].y * f;
      out += v[j] * f;
    }
    run_max = mx;
  }
  a.out[(static_cast<int64_t>(i) * a.H + h) * a.Dh + d] = __float2bfloat16(out / sum);
}

// kPrefetch: see below; chosen by the launcher only for small caches. kKeys: keys per key group whose
// loads are in flight together. kLastBlockMerges: the last block of a (query, KV head) to finish merges
// its chunks (a.merge_count counts them and is reset by that block). kPreload: the first round of the
// chunk's K/V rows older than the newest (written by earlier steps) is loaded into registers before
// griddepcontrol.wait, so it is in flight through the QKV projection's tail and the wait; the newest row,
// which the previous kernel writes, is loaded after.
template <int kDh, int kGroup, bool kPrefetch, int kThreads, int kKeys, bool kLastBlockMerges, bool kTriggerEarly,
          bool kPreload = false>
__global__ __launch_bounds__(kThreads) void attention_decode_chunk_kernel(AttentionDecodeArgs a, float scale_log2,
                                                                          int n_chunks) {
  if constexpr (kTriggerEarly) pdl_launch_dependents();
  constexpr int kLanes = kDh / 8;             // lanes per key
  constexpr int kKeyGroups = kThreads / kLanes;
  __shared__ float s_acc[kKeyGroups][kGroup][kDh];
  __shared__ float s_m[kKeyGroups][kGroup], s_l[kKeyGroups][kGroup];

  // pos and slot are inputs of the whole step (staged before the graph), and every cached key before
  // the newest was written by earlier steps: so the chunk's old K/V rows can be pulled into L2 before
  // waiting on the previous kernel (which writes only the newest row), overlapping its tail. That pays
  // for small layers (smollm2-135m: 0.581 -> 0.556 ms per step); behind a large QKV projection the
  // lines are evicted again by its weights streaming through L2 (llama2-7b: 5.34 -> 5.54 ms).
  // The positions and slots are read before the wait in both variants, for the same reason.
  const int chunk = blockIdx.x, g = blockIdx.y, i = blockIdx.z;
  const int len = a.pos[i] + 1;
  const int k0 = chunk * a.chunk;
  const int64_t head_base = (static_cast<int64_t>(a.slot[i]) * a.Hkv + g) * a.S * kDh;
  const int k1 = min(len, k0 + a.chunk);
  if constexpr (kPrefetch) {
    constexpr int kLinesPerRow = kDh * 2 / 128;
    const int old_rows = max(0, min(k1, len - 1) - k0);
    for (int e = threadIdx.x; e < 2 * old_rows * kLinesPerRow; e += kThreads) {
      const bf16* cache = e < old_rows * kLinesPerRow ? a.k_cache : a.v_cache;
      const int line = e % (old_rows * kLinesPerRow);
      const bf16* p = cache + head_base + static_cast<int64_t>(k0) * kDh + line * 64;
      asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
    }
  }
  const int kg = threadIdx.x / kLanes, sub = threadIdx.x % kLanes;
  const bf16* kp = a.k_cache + head_base + sub * 8;
  const bf16* vp = a.v_cache + head_base + sub * 8;
  uint4 ku[kKeys], vu[kKeys];
  // This lane's 16 bytes of the K and V rows of `key` into slot r.
  auto load_key = [&](int r, int key) {
    ku[r] = *reinterpret_cast<const uint4*>(kp + static_cast<int64_t>(key) * kDh);
    vu[r] = *reinterpret_cast<const uint4*>(vp + static_cast<int64_t>(key) * kDh);
  };
  const int old_end = min(k1, len - 1);
  if constexpr (kPreload) {
#pragma unroll
    for (int r = 0; r < kKeys; ++r) {
      const int key = k0 + r * kKeyGroups + kg;
      if (key < old_end) {
        load_key(r, key);
      } else {
        ku[r] = vu[r] = make_uint4(0, 0, 0, 0);
      }
    }
  }
  pdl_wait();  // every block waits before it ends, so completion stays transitive
  if constexpr (!kTriggerEarly) pdl_launch_dependents();
  if (k0 >= len) return;

  float q[kGroup][8];
#pragma unroll
  for (int j = 0; j < kGroup; ++j) {
    const int h = g * kGroup + j;
    const uint4 u = *reinterpret_cast<const uint4*>(a.q + (static_cast<int64_t>(i) * a.H + h) * kDh + sub * 8);
    to_float8(u, q[j]);
#pragma unroll
    for (int e = 0; e < 8; ++e) q[j][e] *= scale_log2;
  }
  float m[kGroup], l[kGroup], acc[kGroup][8];
#pragma unroll
  for (int j = 0; j < kGroup; ++j) {
    m[j] = -INFINITY;
    l[j] = 0;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0;
  }

  // Uniform trip count across the block so the shuffles below never diverge.
  for (int kb = k0; kb < k1; kb += kKeys * kKeyGroups) {
    int key[kKeys];
#pragma unroll
    for (int r = 0; r < kKeys; ++r) key[r] = kb + r * kKeyGroups + kg;
    const bool preloaded = kPreload && kb == k0;
#pragma unroll
    for (int r = 0; r < kKeys; ++r) {
      if (preloaded) {
        if (key[r] >= old_end && key[r] < k1) load_key(r, key[r]);  // the newest key, written by the previous kernel
      } else if (key[r] < k1) {
        load_key(r, key[r]);
      } else {
        ku[r] = vu[r] = make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int r = 0; r < kKeys; ++r) {
      float kf[8], vf[8];
      to_float8(ku[r], kf);
      to_float8(vu[r], vf);
      const bool valid = key[r] < k1;
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
        float s = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) s = fmaf(q[j][e], kf[e], s);
#pragma unroll
        for (int o = kLanes / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (valid) {
          const float m_new = fmaxf(m[j], s);
          const float corr = exp2f(m[j] - m_new);
          const float p = exp2f(s - m_new);
          l[j] = l[j] * corr + p;
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[j][e] = fmaf(p, vf[e], acc[j][e] * corr);
          m[j] = m_new;
        }
      }
    }
  }

#pragma unroll
  for (int j = 0; j < kGroup; ++j) {
#pragma unroll
    for (int e = 0; e < 8; ++e) s_acc[kg][j][sub * 8 + e] = acc[j][e];
    if (sub == 0) {
      s_m[kg][j] = m[j];
      s_l[kg][j] = l[j];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kGroup * kDh; e += kThreads) {
    const int j = e / kDh, d = e % kDh;
    float mx = -INFINITY;
    for (int r = 0; r < kKeyGroups; ++r) mx = fmaxf(mx, s_m[r][j]);
    float sum = 0, out = 0;
    for (int r = 0; r < kKeyGroups; ++r) {
      if (s_m[r][j] == -INFINITY) continue;  // this key group saw no key
      const float f = exp2f(s_m[r][j] - mx);
      sum += s_l[r][j] * f;
      out += s_acc[r][j][d] * f;
    }
    const int h = g * kGroup + j;
    const int64_t part = (static_cast<int64_t>(i) * a.H + h) * n_chunks + chunk;
    a.part_acc[part * kDh + d] = out;
    if (d == 0) {
      a.part_ml[part * 2] = mx;
      a.part_ml[part * 2 + 1] = sum;
    }
  }
  if constexpr (kLastBlockMerges) {
    // Release this block's partials, count the chunk, and let the block that completes the count merge.
    __shared__ bool s_last;
    __threadfence();
    __syncthreads();
    const int used = (len + a.chunk - 1) / a.chunk;
    if (threadIdx.x == 0) {
      int* count = a.merge_count + i * a.Hkv + g;
      s_last = atomicAdd(count, 1) == used - 1;
      if (s_last) *count = 0;  // every other block of this (query, KV head) has counted: ready for the next step
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    for (int e = threadIdx.x; e < kGroup * kDh; e += kThreads) {
      // 4 chunks per round trip keep the kernel at 60 registers at GQA group 1, so 4 blocks per SM (8 took
      // 76, 3 blocks: llama2-7b batch 16 and 64 +4-5% per step, where this kernel streams the whole cache).
      merge_chunks<4>(a, n_chunks, used, i, g * kGroup + e / kDh, e % kDh);
    }
  }
}

// One block per (head, query), Dh threads: merges the valid chunks' partials into the output row.
// kBatch: chunks per round trip, the launcher's smallest of 4..32 that covers n_chunks (registers grow with
// it, and at large batches there are thousands of these blocks over one or two chunks each).
template <int kBatch, bool kTriggerEarly>
__global__ void attention_merge_chunks_kernel(AttentionDecodeArgs a, int n_chunks) {
  if constexpr (kTriggerEarly) pdl_launch_dependents();
  const int h = blockIdx.x, i = blockIdx.y, d = threadIdx.x;
  const int len = a.pos[i] + 1;  // a step input: read before the wait
  pdl_wait();
  if constexpr (!kTriggerEarly) pdl_launch_dependents();
  merge_chunks<kBatch>(a, n_chunks, (len + a.chunk - 1) / a.chunk, i, h, d);
}

// The merge kernel with kBatch sized to n_chunks.
template <bool kTriggerEarly>
Status launch_merge(const AttentionDecodeArgs& a, int n_chunks, cudaStream_t stream) {
  auto merge = n_chunks <= 4    ? attention_merge_chunks_kernel<4, kTriggerEarly>
               : n_chunks <= 8  ? attention_merge_chunks_kernel<8, kTriggerEarly>
               : n_chunks <= 16 ? attention_merge_chunks_kernel<16, kTriggerEarly>
                                : attention_merge_chunks_kernel<32, kTriggerEarly>;
  return launch_kernel(merge, dim3(a.H, a.Nq), dim3(a.Dh), 0, stream, a, n_chunks);
}

// Large layers (no K/V prefetch) of up to 2 sequences let the next kernel launch at the start (launch.cuh),
// as the gemv does; small ones after the wait, where the early launch cost the chunk kernel 1% per step
// (smollm2-135m batch 1). The merge kernel of up to 2 sequences launches the out projection at its start on
// small layers too, so that projection's blocks and weight loads wait on the merge instead of following it
// (H200, smollm2-135m batch 1: 0.415-0.416 -> 0.407 ms per step, LP 10:26 0.340 -> 0.327-0.328, batch 4
// unchanged; the kernel timeline had the out projection starting only 1.2 us before the merge ended).
template <int kDh, int kGroup, bool kTriggerEarly>
Status launch_variant(const AttentionDecodeArgs& a, cudaStream_t stream) {
  const int n_chunks = (a.S + a.chunk - 1) / a.chunk;
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(kDh));
  const dim3 grid(n_chunks, a.Hkv, a.Nq);
  // The wide variant (llama2-7b batch 1: 5.099 -> 5.069 ms per step with 256 threads and 4 keys in
  // flight per key group, -> 5.033 with the last-block merge). Its shared merge buffer is 16 key groups x
  // kGroup x Dh floats, hence groups <= 2; on small layers the last-block merge's fence and atomic cost
  // more than the merge launch under PDL (smollm2-135m batch 1: +2 us per layer). The preload before the
  // wait: llama2-7b on the H200, batch 1 3.634 -> 3.581 ms per step, batch 64 12.25 -> 12.13 ms, batch 16
  // unchanged; 8 keys per key group in flight, with or without the preload, was slower at batch 16 and 64.
  if constexpr (kGroup <= 2) {
    if (!a.prefetch_kv) {
      return launch_kernel(attention_decode_chunk_kernel<kDh, kGroup, false, 256, 4, true, kTriggerEarly, true>, grid,
                           dim3(256), 0, stream, a, scale_log2, n_chunks);
    }
  }
  // K and V of every sequence of the step at full context, against L2's 50 MB.
  const int64_t cache_bytes = 4ll * a.Nq * a.Hkv * a.S * kDh;
  constexpr int64_t kPrefetchMaxCacheBytes = 4 << 20;
  const bool prefetch = a.prefetch_kv && cache_bytes <= kPrefetchMaxCacheBytes;
  auto kernel = attention_decode_chunk_kernel<kDh, kGroup, false, 128, 2, false, kTriggerEarly>;
  if constexpr (!kTriggerEarly) {  // early launches are large layers', which never prefetch
    if (prefetch) kernel = attention_decode_chunk_kernel<kDh, kGroup, true, 128, 2, false, false>;
  }
  DUET_TRY(launch_kernel(kernel, grid, dim3(128), 0, stream, a, scale_log2, n_chunks));
  if (a.merge_in_consumer) return ok_status();
  if (a.Nq <= 2) return launch_merge<true>(a, n_chunks, stream);
  return launch_merge<false>(a, n_chunks, stream);
}

template <int kDh, int kGroup>
Status launch(const AttentionDecodeArgs& a, cudaStream_t stream) {
  if (!a.prefetch_kv && a.Nq <= 2) return launch_variant<kDh, kGroup, true>(a, stream);
  return launch_variant<kDh, kGroup, false>(a, stream);
}

template <int kDh>
Status dispatch_group(const AttentionDecodeArgs& a, cudaStream_t stream) {
  switch (a.H / a.Hkv) {
    case 1: return launch<kDh, 1>(a, stream);
    case 2: return launch<kDh, 2>(a, stream);
    case 3: return launch<kDh, 3>(a, stream);
    case 4: return launch<kDh, 4>(a, stream);
    case 5: return launch<kDh, 5>(a, stream);
    case 6: return launch<kDh, 6>(a, stream);
    case 7: return launch<kDh, 7>(a, stream);
    case 8: return launch<kDh, 8>(a, stream);
  }
  return make_error("attention_decode: GQA group ", a.H / a.Hkv, " unsupported (expected 1..8)");
}

}  // namespace

Status attention_decode_split_kv(const AttentionDecodeArgs& a, cudaStream_t stream) {
  if (a.Hkv <= 0 || a.H % a.Hkv != 0) return make_error("attention_decode: H=", a.H, " not a multiple of Hkv=", a.Hkv);
  if (a.chunk <= 0) return make_error("attention_decode: chunk must be positive");
  if (a.merge_in_consumer && !a.prefetch_kv) {
    return make_error("attention_decode: merge_in_consumer is for small layers (prefetch_kv)");
  }
  if (a.Dh == 64) return dispatch_group<64>(a, stream);
  if (a.Dh == 128) return dispatch_group<128>(a, stream);
  return make_error("attention_decode: head_dim ", a.Dh, " unsupported (expected 64 or 128)");
}

}  // namespace duet::cuda
