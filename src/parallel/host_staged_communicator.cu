#include "parallel/host_staged_communicator.h"

#include <vector>

#include "kernels/cuda/cuda_check.cuh"

namespace duet {
namespace {

class HostStagedCommunicator final : public Communicator {
 public:
  HostStagedCommunicator(Communicator& host, cudaStream_t stream) : host_(host), stream_(stream) {}
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }

  Status all_reduce_sum(float* data, int64_t count) override {
    staging_.resize(static_cast<size_t>(count) * sizeof(float));
    DUET_TRY(to_host(data, staging_.size()));
    DUET_TRY(host_.all_reduce_sum(reinterpret_cast<float*>(staging_.data()), count));
    return to_device(data, staging_.size());
  }
  Status broadcast(void* data, int64_t bytes, int root) override {
    staging_.resize(static_cast<size_t>(bytes));
    DUET_TRY(to_host(data, staging_.size()));
    DUET_TRY(host_.broadcast(staging_.data(), bytes, root));
    return to_device(data, staging_.size());
  }
  Status barrier() override {
    DUET_CUDA_TRY(cudaStreamSynchronize(stream_));
    return host_.barrier();
  }

 private:
  Status to_host(const void* data, size_t bytes) {
    DUET_CUDA_TRY(cudaMemcpyAsync(staging_.data(), data, bytes, cudaMemcpyDeviceToHost, stream_));
    DUET_CUDA_TRY(cudaStreamSynchronize(stream_));
    return ok_status();
  }
  // Synchronous, so that staging_ may be reused by the next collective.
  Status to_device(void* data, size_t bytes) {
    DUET_CUDA_TRY(cudaMemcpyAsync(data, staging_.data(), bytes, cudaMemcpyHostToDevice, stream_));
    DUET_CUDA_TRY(cudaStreamSynchronize(stream_));
    return ok_status();
  }

  Communicator& host_;
  cudaStream_t stream_;
  std::vector<char> staging_;
};

}  // namespace

std::unique_ptr<Communicator> make_host_staged_communicator(Communicator& host, void* stream) {
  return std::make_unique<HostStagedCommunicator>(host, static_cast<cudaStream_t>(stream));
}

}  // namespace duet
