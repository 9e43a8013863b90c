#include "parallel/nccl_communicator.h"

#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_check.cuh"

// DUET_NCCL_TRY: every NCCL call goes through it; a failure returns an Error
// naming the call, NCCL's message, file and line.
#define DUET_NCCL_TRY(expr)                                                                               \
  do {                                                                                                    \
    const ncclResult_t duet_nccl_result_ = (expr);                                                        \
    if (duet_nccl_result_ != ncclSuccess) {                                                               \
      return ::duet::make_error("NCCL error ", ncclGetErrorString(duet_nccl_result_), " in ", #expr,      \
                                " at ", __FILE__, ":", __LINE__);                                         \
    }                                                                                                     \
  } while (0)

namespace duet {
namespace {

static_assert(sizeof(ncclUniqueId) == sizeof(NcclId), "NcclId must hold an ncclUniqueId");

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, cudaStream_t stream, float* scratch)
      : comm_(comm), rank_(rank), size_(size), stream_(stream), scratch_(scratch) {}
  ~NcclCommunicator() override {
    ncclCommDestroy(comm_);
    cudaFree(scratch_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  Status all_reduce_sum(float* data, int64_t count) override {
    DUET_NCCL_TRY(ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclSum, comm_, stream_));
    return ok_status();
  }
  Status broadcast(void* data, int64_t bytes, int root) override {
    if (root < 0 || root >= size_) return make_error("broadcast: root ", root, " is not a rank of ", size_);
    DUET_NCCL_TRY(ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, comm_, stream_));
    return ok_status();
  }
  // A one-float all-reduce, waited for: no rank passes before all have arrived.
  Status barrier() override {
    DUET_NCCL_TRY(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_));
    DUET_CUDA_TRY(cudaStreamSynchronize(stream_));
    return ok_status();
  }

 private:
  ncclComm_t comm_;
  int rank_, size_;
  cudaStream_t stream_;
  float* scratch_;  // [1] on the device, for barrier()
};

}  // namespace

Result<NcclId> make_nccl_id() {
  ncclUniqueId id;
  DUET_NCCL_TRY(ncclGetUniqueId(&id));
  NcclId out;
  std::memcpy(out.data(), &id, sizeof(id));
  return out;
}

std::string nccl_id_to_hex(const NcclId& id) {
  static const char* kDigits = "0123456789abcdef";
  std::string hex;
  for (char c : id) {
    const auto b = static_cast<unsigned char>(c);
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return hex;
}

Result<NcclId> nccl_id_from_hex(const std::string& hex) {
  NcclId id;
  if (hex.size() != 2 * id.size()) return make_error("NCCL id: expected ", 2 * id.size(), " hex digits, got ", hex.size());
  auto nibble = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  for (size_t i = 0; i < id.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return make_error("NCCL id: '", hex.substr(2 * i, 2), "' is not lower-case hex");
    id[i] = static_cast<char>(hi * 16 + lo);
  }
  return id;
}

Result<std::unique_ptr<Communicator>> make_nccl_communicator(const NcclId& id, int rank, int size, int device,
                                                             void* stream) {
  if (size < 1 || rank < 0 || rank >= size) return make_error("NCCL: rank ", rank, " of ", size, " is not a rank");
  // Multicast over NVSwitch changes NCCL's algorithms and memory use; duet measures without it.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  DUET_CUDA_TRY(cudaSetDevice(device));
  ncclUniqueId unique;
  std::memcpy(&unique, id.data(), sizeof(unique));
  ncclComm_t comm;
  DUET_NCCL_TRY(ncclCommInitRank(&comm, size, unique, rank));
  float* scratch = nullptr;
  const cudaError_t alloc = cudaMalloc(&scratch, sizeof(float));
  if (alloc != cudaSuccess) {
    ncclCommDestroy(comm);
    DUET_CUDA_TRY(alloc);
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<NcclCommunicator>(comm, rank, size, static_cast<cudaStream_t>(stream), scratch));
}

namespace {

// Rank r's part of measure_nccl_all_reduce_us; rank 0 stores the mean in *us.
Status time_rank(const NcclId& id, int rank, int gpus, int64_t count, int reps, double* us) {
  DUET_CUDA_TRY(cudaSetDevice(rank));
  cudaStream_t stream = nullptr;
  DUET_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  float* data = nullptr;
  DUET_CUDA_TRY(cudaMalloc(&data, static_cast<size_t>(count) * sizeof(float)));
  DUET_CUDA_TRY(cudaMemsetAsync(data, 0, static_cast<size_t>(count) * sizeof(float), stream));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  Status result = [&]() -> Status {
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, make_nccl_communicator(id, rank, gpus, rank, stream));
    DUET_TRY(comm->all_reduce_sum(data, count));  // warm-up outside the graph
    DUET_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    for (int i = 0; i < reps; ++i) {
      const Status s = comm->all_reduce_sum(data, count);
      if (!s.ok()) {
        cudaStreamEndCapture(stream, &graph);
        return s;
      }
    }
    DUET_CUDA_TRY(cudaStreamEndCapture(stream, &graph));
    DUET_CUDA_TRY(cudaGraphInstantiate(&exec, graph, 0));
    DUET_CUDA_TRY(cudaGraphLaunch(exec, stream));  // warm-up replay
    DUET_CUDA_TRY(cudaEventCreate(&start));
    DUET_CUDA_TRY(cudaEventCreate(&stop));
    DUET_CUDA_TRY(cudaEventRecord(start, stream));
    DUET_CUDA_TRY(cudaGraphLaunch(exec, stream));
    DUET_CUDA_TRY(cudaEventRecord(stop, stream));
    DUET_CUDA_TRY(cudaEventSynchronize(stop));
    float ms = 0;
    DUET_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
    if (rank == 0) *us = 1e3 * ms / reps;
    return comm->barrier();
  }();
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cudaFree(data);
  cudaStreamDestroy(stream);
  return result;
}

}  // namespace

Result<double> measure_nccl_all_reduce_us(int gpus, int64_t count, int reps) {
  int visible = 0;
  DUET_CUDA_TRY(cudaGetDeviceCount(&visible));
  if (gpus < 2 || gpus > visible) return make_error("all-reduce timing needs 2..", visible, " GPUs, asked for ", gpus);
  DUET_ASSIGN_OR_RETURN(NcclId id, make_nccl_id());
  std::vector<Status> status(gpus);
  double us = 0;
  std::vector<std::thread> threads;
  for (int r = 0; r < gpus; ++r) {
    threads.emplace_back([&, r] { (void)(status[r] = time_rank(id, r, gpus, count, reps, &us)); });
  }
  for (std::thread& t : threads) t.join();
  for (const Status& s : status) DUET_TRY(s);
  return us;
}

}  // namespace duet
