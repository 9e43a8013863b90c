// Healing checkpoints: a self-describing binary file.
//
//   "DUETCKPT"  8 bytes magic
//   uint32      format version (1)
//   uint64      header length H
//   H bytes     JSON header: run identity (model, plan, seed, seq_len, stages, tokens), progress
//               (stage index, steps done in it), and the tensor table (name, shape, offset in floats)
//   float32     params [N], then AdamW m [N], then v [N]  (N = the table's total)
//   uint64      FNV-1a 64 of every byte before it
//
// A run resumes only from a checkpoint of the same run identity and tensor table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "train/params.h"

namespace duet::train {

struct Checkpoint {
  std::string identity;  // JSON text describing the run; resuming requires an equal one
  int stage = 0;         // index into the run's stage list
  int64_t step = 0;      // optimizer steps done in that stage
  ParamLayout layout;
  std::vector<float> params, m, v;  // [layout.total] each
};

Status save_checkpoint(const Checkpoint& checkpoint, const std::string& path);
// Errors (one line, naming the file) for a missing, truncated, corrupt or foreign file.
Result<Checkpoint> load_checkpoint(const std::string& path);

}  // namespace duet::train
