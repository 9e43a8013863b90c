// HF safetensors reader: one file, or a sharded checkpoint through
// model.safetensors.index.json. Also a writer for tests.
//
// File layout: u64 header_len | JSON header {name: {dtype, shape, data_offsets:
// [begin, end]}, "__metadata__": {...}} | data. Offsets are relative to the
// end of the header. duet reads F32, F16 and BF16 tensors.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"
#include "io/mapped_file.h"
#include "io/tensor_info.h"

namespace duet {

// Parses one safetensors file held by the caller (the fuzzer, tests): tensors
// point into `data`, which must outlive them, sorted by offset. `name` stands
// for the path in messages.
Result<std::vector<TensorInfo>> parse_safetensors(const std::string& name, const uint8_t* data,
                                                  uint64_t size);

// model.safetensors.index.json: which shard file holds each tensor.
struct SafetensorsIndex {
  std::vector<std::string> shards;  // distinct plain file names, in order of first mention
  std::vector<std::pair<std::string, size_t>> weight_map;  // tensor name -> index into shards
};
Result<SafetensorsIndex> parse_safetensors_index(const std::string& name, std::string_view text);

class SafetensorsModel {
 public:
  // `path` is a .safetensors file, a *.safetensors.index.json, or a directory
  // holding model.safetensors or model.safetensors.index.json.
  static Result<SafetensorsModel> open(const std::string& path);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;
  // Directory that holds the weights (config.json and tokenizer.json live there).
  const std::string& directory() const { return directory_; }

 private:
  std::vector<std::unique_ptr<MappedFile>> shards_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
  std::string directory_;
};

class SafetensorsWriter {
 public:
  // type: F32, F16 or BF16; `bytes` in that encoding.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                  std::vector<uint8_t> bytes);
  void add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape,
                      const std::vector<float>& values);
  Status write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Pending> tensors_;
};

}  // namespace duet
