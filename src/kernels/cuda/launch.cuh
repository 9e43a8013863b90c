// launch_kernel: every duet kernel is launched through here with Programmatic
// Dependent Launch (PDL) allowed, so that inside a CUDA graph the next kernel's
// launch and block scheduling overlap the tail of the previous one; at decode
// of small models the gaps between ~240 short kernels are most of the step.
// Contract for every kernel launched this way: call pdl_wait() before touching
// global memory that earlier kernels of the step write (it returns once the
// preceding grid has completed and its writes are visible; every block waits
// before it ends, so completion stays transitive down the chain), and
// pdl_launch_dependents() to let the next grid start its launch. Reads of what
// no kernel of the step writes (weights, the step's staged positions, older
// cache rows) may go before the wait: that is how a kernel overlaps its
// predecessor. The trigger goes right after the wait, or, for most decode
// gemv and attention launches, first thing: the next grid then launches as
// soon as this one is resident, and its pre-wait weight loads get this
// kernel's whole run, not only its tail, to hide behind (llama2-7b batch 1:
// 4.99 -> 4.94 ms per step). Both are no-ops below sm_90 (the portable
// compute_80 build).
#pragma once

#include <utility>

#include "kernels/cuda/cuda_check.cuh"

namespace duet::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

template <class... KernelArgs, class... Args>
Status launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                     Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  DUET_CUDA_TRY(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
  return ok_status();
}

}  // namespace duet::cuda
