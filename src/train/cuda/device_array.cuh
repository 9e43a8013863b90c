// DeviceArray<T>: a device allocation that grows on demand and frees itself.
// Allocation failures come back as Status (a GPU out of memory is a
// recoverable error for `duet heal`, reported with the size asked for).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_check.cuh"

namespace duet::train::cuda {

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), size_(o.size_) { o.ptr_ = nullptr, o.size_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
    return *this;
  }

  // Holds at least n elements afterwards (contents lost when it grows).
  Status reserve(int64_t n) {
    if (n <= size_) return ok_status();
    release();
    const cudaError_t e = cudaMalloc(&ptr_, static_cast<size_t>(n) * sizeof(T));
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free allocation error
      return make_error("GPU out of memory: cannot allocate ", static_cast<double>(n) * sizeof(T) / (1 << 20),
                        " MiB (", cudaGetErrorString(e), "); use a smaller --batch or --seq-len");
    }
    size_ = n;
    return ok_status();
  }
  // Gives the memory back (reserve only grows).
  void release() {
    cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = 0;
  }
  Status upload(const T* host, int64_t n) {
    DUET_TRY(reserve(n));
    DUET_CUDA_TRY(cudaMemcpy(ptr_, host, static_cast<size_t>(n) * sizeof(T), cudaMemcpyHostToDevice));
    return ok_status();
  }
  Status upload(const std::vector<T>& host) { return upload(host.data(), static_cast<int64_t>(host.size())); }
  Status download(T* host, int64_t n) const {
    DUET_CUDA_TRY(cudaMemcpy(host, ptr_, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToHost));
    return ok_status();
  }
  Status zero(int64_t n, cudaStream_t stream) {
    DUET_CUDA_TRY(cudaMemsetAsync(ptr_, 0, static_cast<size_t>(n) * sizeof(T), stream));
    return ok_status();
  }

  T* get() const { return ptr_; }
  int64_t size() const { return size_; }

 private:
  T* ptr_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace duet::train::cuda
