// attention_prefill_wgmma: attention_prefill's kernel for compute capability 9.0 (built for sm_90a only).
#pragma once

#include "kernels/cuda/ops.cuh"

namespace duet::cuda {

// As attention_prefill with Dh = 128: q [T,H,128], or with rope.cos the unrotated q columns of rows of
// rope.row_stride elements; k/v [Hkv,S,128] (Hkv*S*128 < 2^31, H % Hkv == 0, both checked by
// attention_prefill); out [T,H*128]; all bf16.
Status attention_prefill_wgmma(const bf16* q, const bf16* k, const bf16* v, bf16* out, int T, int pos0, int H,
                               int Hkv, int S, const QueryRope& rope, cudaStream_t stream);

}  // namespace duet::cuda
