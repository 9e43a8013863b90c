// Writes float32 arrays as NumPy .npy (format 1.0, little-endian, C order).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"

namespace duet {

Status write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace duet
