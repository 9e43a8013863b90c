// A tensor as stored in a checkpoint: name, element type, shape, and a pointer
// to its bytes inside a mapped file (valid while the owning file object lives).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/dtype.h"

namespace duet {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // outermost first, last dim contiguous (PyTorch order)
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

}  // namespace duet
