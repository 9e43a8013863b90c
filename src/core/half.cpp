#include "core/half.h"

#include <immintrin.h>

namespace duet {

// F16C is part of every x86-64 CPU this project targets (and of the CI machine).
float fp16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
uint16_t f32_to_fp16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

}  // namespace duet
