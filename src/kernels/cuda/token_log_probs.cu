// token_log_probs: per-row log-softmax at one target id, plus the row argmax,
// so that scoring (duet eval, perplexity) copies 8 bytes per position to the
// host instead of a whole [V] row of logits (V = 49152 floats for SmolLM2).
#include <cfloat>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row: pass 1 finds the max (and its lowest index), pass 2 sums exp(x - max).
__global__ void token_log_probs_kernel(const float* __restrict__ logits, int V, const int32_t* __restrict__ targets,
                                       float* __restrict__ log_probs, int32_t* __restrict__ argmax) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float best_value[kThreads];
  __shared__ int best_index[kThreads];
  __shared__ float partial[kThreads];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * V;

  float value = -FLT_MAX;
  int index = 0;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    if (row[i] > value) {  // strided scan: the first hit per thread is its lowest index
      value = row[i];
      index = i;
    }
  }
  best_value[threadIdx.x] = value;
  best_index[threadIdx.x] = index;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const float v = best_value[threadIdx.x + stride];
      const int j = best_index[threadIdx.x + stride];
      if (v > best_value[threadIdx.x] || (v == best_value[threadIdx.x] && j < best_index[threadIdx.x])) {
        best_value[threadIdx.x] = v;
        best_index[threadIdx.x] = j;
      }
    }
    __syncthreads();
  }
  const float max_value = best_value[0];

  float sum = 0;
  for (int i = threadIdx.x; i < V; i += kThreads) sum += __expf(row[i] - max_value);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    log_probs[blockIdx.x] = row[targets[blockIdx.x]] - max_value - logf(partial[0]);
    argmax[blockIdx.x] = best_index[0];
  }
}

}  // namespace

Status token_log_probs(const float* logits, int rows, int V, const int32_t* targets, float* log_probs,
                       int32_t* argmax, cudaStream_t stream) {
  if (rows <= 0) return ok_status();
  return launch_kernel(token_log_probs_kernel, dim3(rows), dim3(kThreads), 0, stream, logits, V, targets, log_probs,
                       argmax);
}

}  // namespace duet::cuda
