// GGUF v2/v3 reader: header, metadata key/values, tensor infos, aligned data.
//
// File layout (little-endian):
//   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32) | tensor data
// string = u64 length + bytes (no NUL). ne[0] is the contiguous dimension, so
// TensorInfo::shape is ne reversed. Offsets are relative to the data section
// and must be multiples of the alignment.
//
// Every count, length and offset is validated against the file size before
// use: a corrupt file gives an Error, never a crash or a huge allocation.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "io/mapped_file.h"
#include "io/tensor_info.h"

namespace duet {

// One metadata value. Scalars of every integer width collapse into `i`
// (unsigned values above INT64_MAX are rejected), floats into `f`; `type`
// keeps the GGUF value type as stored, so GgufWriter::add_value writes the
// value back byte for byte (llama.cpp checks the exact type of many keys).
struct GgufValue {
  enum class Kind { Int, Float, Bool, String, Array };
  Kind kind = Kind::Int;
  uint32_t type = 0;          // gguf_type id: 0 u8 ... 4 u32, 5 i32, 6 f32, 8 string, 9 array, ...
  uint32_t element_type = 0;  // arrays: the gguf_type id of the elements
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<GgufValue> array;
};

class GgufFile {
 public:
  // Maps the file and parses it; tensors point into the mapping.
  static Result<GgufFile> open(const std::string& path);

  // Parses GGUF bytes held by the caller (tests, the fuzzer): tensors point into
  // `data`, which must outlive the result. `name` stands for the path in
  // messages and path().
  static Result<GgufFile> parse(const std::string& name, const uint8_t* data, uint64_t size);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return name_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;

  // Typed look-ups: nullopt when the key is missing or has another kind
  // (get_float also accepts an Int value).
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<std::vector<std::string>> get_string_array(const std::string& key) const;
  std::optional<std::vector<float>> get_float_array(const std::string& key) const;
  std::optional<std::vector<int64_t>> get_int_array(const std::string& key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;

 private:
  MappedFile file_;  // empty when parsed from caller-held bytes
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds GGUF v3 files (tests write tiny checkpoints with it; duet export writes models).
class GgufWriter {
 public:
  void add_int(const std::string& key, int64_t value);     // stored as i32 if it fits, else i64
  void add_uint32(const std::string& key, uint32_t value);  // stored as u32
  void add_float(const std::string& key, float value);      // stored as f32
  void add_bool(const std::string& key, bool value);
  void add_string(const std::string& key, const std::string& value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_float_array(const std::string& key, const std::vector<float>& values);
  void add_int_array(const std::string& key, const std::vector<int32_t>& values);
  // A value read by GgufFile, in its original type (copies metadata between files).
  void add_value(const std::string& key, const GgufValue& value);

  // `shape` outermost first; `bytes` must hold the tensor in `type`'s encoding.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                  std::vector<uint8_t> bytes);
  void add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape,
                      const std::vector<float>& values);

  Status write(const std::string& path) const;

 private:
  std::vector<std::vector<uint8_t>> kv_;  // each: serialized key + type + value
  struct PendingTensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<PendingTensor> tensors_;
};

}  // namespace duet
