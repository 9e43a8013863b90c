// DUET_CUDA_TRY: the one check macro for every CUDA runtime and cuBLAS call.
// In a function returning Status or Result<T>, a failed call returns an Error
// naming the expression, the error string, file and line. Kernel launches are
// checked with DUET_CUDA_TRY(cudaGetLastError()) right after the launch.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/result.h"

namespace duet::cuda {

using bf16 = __nv_bfloat16;

inline Status cuda_call_status(cudaError_t code, const char* expr, const char* file, int line) {
  if (code == cudaSuccess) return ok_status();
  return make_error("CUDA error ", cudaGetErrorName(code), " (", cudaGetErrorString(code), ") in ", expr, " at ",
                    file, ":", line);
}

inline Status cuda_call_status(cublasStatus_t code, const char* expr, const char* file, int line) {
  if (code == CUBLAS_STATUS_SUCCESS) return ok_status();
  return make_error("cuBLAS error ", cublasGetStatusName(code), " (", cublasGetStatusString(code), ") in ", expr,
                    " at ", file, ":", line);
}

}  // namespace duet::cuda

#define DUET_CUDA_TRY(expr)                                                                        \
  do {                                                                                             \
    ::duet::Status duet_cuda_status_ = ::duet::cuda::cuda_call_status((expr), #expr, __FILE__, __LINE__); \
    if (!duet_cuda_status_.ok()) return duet_cuda_status_.error();                                 \
  } while (0)
