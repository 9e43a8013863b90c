#include "parallel/p2p_all_reduce.h"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_check.cuh"

namespace duet {
namespace {

constexpr int kMaxRanks = 8;
constexpr int kThreads = 512;
constexpr int kMaxBlocks = 36;  // also the flag slots per rank

struct Peers {
  const float* staging[kMaxRanks];  // rank r's staging buffer, [max_floats]
  uint32_t* flags[kMaxRanks];       // rank r's flags, [kMaxBlocks][2][kMaxRanks]: (block, phase, from rank)
};

__device__ __forceinline__ void signal_and_wait(const Peers& p, uint32_t* own_flags, int block, int phase, int rank,
                                                int size, uint32_t epoch) {
  if (threadIdx.x < size) {
    // Tell rank threadIdx.x that this rank's block reached `phase` of call `epoch`...
    volatile uint32_t* theirs = p.flags[threadIdx.x] + (block * 2 + phase) * kMaxRanks + rank;
    __threadfence_system();
    *theirs = epoch;
    // ...and wait until it has told us the same.
    volatile uint32_t* mine = own_flags + (block * 2 + phase) * kMaxRanks + threadIdx.x;
    while (*mine < epoch) {
    }
  }
  __syncthreads();
}

// one_shot_all_reduce: out[i] = sum over ranks r = 0..size-1 of staging_r[i] (rank order, fp32) for i < count.
// Every rank runs it with the same grid; epochs[block] counts this rank's calls per block.
__global__ __launch_bounds__(kThreads) void one_shot_all_reduce_kernel(Peers p, uint32_t* epochs, float* out,
                                                                       int64_t count, int rank, int size) {
  __shared__ uint32_t epoch;
  if (threadIdx.x == 0) epoch = epochs[blockIdx.x] + 1;
  __syncthreads();
  uint32_t* own_flags = p.flags[rank];
  signal_and_wait(p, own_flags, blockIdx.x, 0, rank, size, epoch);  // every rank's input is staged
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    float sum = static_cast<const volatile float*>(p.staging[0])[i];
    for (int r = 1; r < size; ++r) sum += static_cast<const volatile float*>(p.staging[r])[i];
    out[i] = sum;
  }
  __syncthreads();
  signal_and_wait(p, own_flags, blockIdx.x, 1, rank, size, epoch);  // nobody reads the staging buffers any more
  if (threadIdx.x == 0) epochs[blockIdx.x] = epoch;
}

// A reusable barrier of the rank threads (.cu files are C++17: no std::barrier).
class ThreadBarrier {
 public:
  explicit ThreadBarrier(int n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t generation = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int n_, arrived_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace

struct P2pGroup::State {
  int size;
  int64_t max_floats;
  ThreadBarrier arrived;
  Peers peers{};
  explicit State(int n, int64_t floats) : size(n), max_floats(floats), arrived(n) {}
  std::vector<void*> allocations;  // [size]: each rank's one allocation, freed on its device
  std::vector<int> devices;
};

namespace {

class P2pCommunicator final : public Communicator {
 public:
  P2pCommunicator(P2pGroup::State& s, int rank, cudaStream_t stream, float* staging, uint32_t* epochs)
      : s_(s), rank_(rank), stream_(stream), staging_(staging), epochs_(epochs) {}
  int rank() const override { return rank_; }
  int size() const override { return s_.size; }

  Status all_reduce_sum(float* data, int64_t count) override {
    if (count > s_.max_floats) return make_error("p2p all-reduce: ", count, " floats exceed the ", s_.max_floats, " staged");
    DUET_CUDA_TRY(cudaMemcpyAsync(staging_, data, count * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
    const int blocks = static_cast<int>(std::min<int64_t>(kMaxBlocks, (count + kThreads - 1) / kThreads));
    one_shot_all_reduce_kernel<<<blocks, kThreads, 0, stream_>>>(s_.peers, epochs_, data, count, rank_, s_.size);
    DUET_CUDA_TRY(cudaGetLastError());
    return ok_status();
  }
  Status broadcast(void*, int64_t, int) override { return make_error("p2p all-reduce: broadcast is not supported"); }
  Status barrier() override {
    DUET_CUDA_TRY(cudaStreamSynchronize(stream_));
    s_.arrived.arrive_and_wait();
    return ok_status();
  }

 private:
  P2pGroup::State& s_;
  int rank_;
  cudaStream_t stream_;
  float* staging_;
  uint32_t* epochs_;
};

}  // namespace

P2pGroup::P2pGroup(int size, int64_t max_floats) : state_(std::make_unique<State>(size, max_floats)) {
  state_->allocations.assign(size, nullptr);
  state_->devices.assign(size, 0);
}

P2pGroup::~P2pGroup() {
  for (int r = 0; r < state_->size; ++r) {
    if (!state_->allocations[r]) continue;
    cudaSetDevice(state_->devices[r]);
    cudaFree(state_->allocations[r]);
  }
}

Result<std::unique_ptr<Communicator>> P2pGroup::join(int rank, void* stream) {
  State& s = *state_;
  if (s.size > kMaxRanks) return make_error("p2p all-reduce: at most ", kMaxRanks, " ranks, got ", s.size);
  // One allocation: staging [max_floats] f32, flags [kMaxBlocks][2][kMaxRanks] u32, epochs [kMaxBlocks] u32.
  const size_t flag_words = kMaxBlocks * 2 * kMaxRanks, bytes = s.max_floats * 4 + (flag_words + kMaxBlocks) * 4;
  // Every rank passes both barriers even when a step fails, so that no rank waits forever for it.
  const Status allocated = [&]() -> Status {
    DUET_CUDA_TRY(cudaGetDevice(&s.devices[rank]));
    DUET_CUDA_TRY(cudaMalloc(&s.allocations[rank], bytes));
    DUET_CUDA_TRY(cudaMemset(s.allocations[rank], 0, bytes));
    s.peers.staging[rank] = static_cast<float*>(s.allocations[rank]);
    s.peers.flags[rank] = reinterpret_cast<uint32_t*>(static_cast<float*>(s.allocations[rank]) + s.max_floats);
    return ok_status();
  }();
  s.arrived.arrive_and_wait();  // every rank's buffers are published
  const Status peered = [&]() -> Status {
    DUET_TRY(allocated);
    for (int r = 0; r < s.size; ++r) {
      if (s.devices[r] == s.devices[rank]) continue;
      int can = 0;
      DUET_CUDA_TRY(cudaDeviceCanAccessPeer(&can, s.devices[rank], s.devices[r]));
      if (!can) return make_error("p2p all-reduce: GPU ", s.devices[rank], " cannot access GPU ", s.devices[r], "'s memory");
      const cudaError_t e = cudaDeviceEnablePeerAccess(s.devices[r], 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) {
        cudaGetLastError();  // clear it: already enabled is fine
      } else {
        DUET_CUDA_TRY(e);
      }
    }
    return ok_status();
  }();
  s.arrived.arrive_and_wait();  // peer access everywhere before any kernel reads a peer
  DUET_TRY(peered);
  return std::unique_ptr<Communicator>(std::make_unique<P2pCommunicator>(
      s, rank, static_cast<cudaStream_t>(stream), static_cast<float*>(s.allocations[rank]), s.peers.flags[rank] + flag_words));
}

Result<double> measure_p2p_all_reduce_us(int gpus, int64_t count, int reps) {
  int visible = 0;
  DUET_CUDA_TRY(cudaGetDeviceCount(&visible));
  if (gpus < 2 || gpus > visible) return make_error("all-reduce timing needs 2..", visible, " GPUs, asked for ", gpus);
  P2pGroup group(gpus, count);
  std::vector<Status> status(gpus, ok_status());
  double us = 0;
  std::vector<std::thread> threads;
  for (int r = 0; r < gpus; ++r) {
    threads.emplace_back([&, r] {
      // (void): nvcc flags the assignment's [[nodiscard]] Result& otherwise.
      (void)(status[r] = [&]() -> Status {
        DUET_CUDA_TRY(cudaSetDevice(r));
        cudaStream_t stream = nullptr;
        DUET_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        float* data = nullptr;
        DUET_CUDA_TRY(cudaMalloc(&data, count * sizeof(float)));
        DUET_CUDA_TRY(cudaMemset(data, 0, count * sizeof(float)));
        DUET_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, group.join(r, stream));
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        DUET_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
        for (int i = 0; i < reps; ++i) DUET_TRY(comm->all_reduce_sum(data, count));
        DUET_CUDA_TRY(cudaStreamEndCapture(stream, &graph));
        DUET_CUDA_TRY(cudaGraphInstantiate(&exec, graph, 0));
        DUET_CUDA_TRY(cudaGraphLaunch(exec, stream));  // warm-up replay
        cudaEvent_t start, stop;
        DUET_CUDA_TRY(cudaEventCreate(&start));
        DUET_CUDA_TRY(cudaEventCreate(&stop));
        DUET_CUDA_TRY(cudaEventRecord(start, stream));
        DUET_CUDA_TRY(cudaGraphLaunch(exec, stream));
        DUET_CUDA_TRY(cudaEventRecord(stop, stream));
        DUET_CUDA_TRY(cudaEventSynchronize(stop));
        float ms = 0;
        DUET_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
        if (r == 0) us = 1e3 * ms / reps;
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        DUET_TRY(comm->barrier());
        cudaFree(data);
        cudaStreamDestroy(stream);
        return ok_status();
      }());
    });
  }
  for (std::thread& t : threads) t.join();
  for (const Status& s : status) DUET_TRY(s);
  return us;
}

}  // namespace duet
