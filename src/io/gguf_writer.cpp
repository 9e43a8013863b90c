// GgufWriter: serialises metadata and tensors as GGUF v3 with 32-byte alignment.
//
// It writes exactly what it is given (no duplicate checks), which lets tests build
// invalid files with it; the reader is where validation lives.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/check.h"
#include "io/gguf.h"

namespace duet {
namespace {

constexpr uint64_t kAlignment = 32;  // GGUF's default, so no general.alignment key is written

// GGUF metadata value type ids (gguf_type in ggml).
constexpr uint32_t kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8,
                   kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12;

template <class T>
void put(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

std::vector<uint8_t> key_and_type(const std::string& key, uint32_t type) {
  std::vector<uint8_t> out;
  put_string(out, key);
  put<uint32_t>(out, type);
  return out;
}

void pad_to_alignment(std::vector<uint8_t>& out) {
  out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, 0);
}

// The value's payload in its own type (no key, no type id).
void put_value(std::vector<uint8_t>& out, const GgufValue& v) {
  switch (v.type) {
    case kU8: return put<uint8_t>(out, static_cast<uint8_t>(v.i));
    case kI8: return put<int8_t>(out, static_cast<int8_t>(v.i));
    case kU16: return put<uint16_t>(out, static_cast<uint16_t>(v.i));
    case kI16: return put<int16_t>(out, static_cast<int16_t>(v.i));
    case kU32: return put<uint32_t>(out, static_cast<uint32_t>(v.i));
    case kI32: return put<int32_t>(out, static_cast<int32_t>(v.i));
    case kU64: return put<uint64_t>(out, static_cast<uint64_t>(v.i));
    case kI64: return put<int64_t>(out, v.i);
    case kF32: return put<float>(out, static_cast<float>(v.f));
    case kF64: return put<double>(out, v.f);
    case kBool: return put<uint8_t>(out, v.b ? 1 : 0);
    case kString: return put_string(out, v.s);
    case kArray:
      put<uint32_t>(out, v.element_type);
      put<uint64_t>(out, v.array.size());
      for (const GgufValue& e : v.array) {
        DUET_CHECK(e.type == v.element_type);
        put_value(out, e);
      }
      return;
  }
  DUET_CHECK(false && "GgufValue with an unknown type id");
}

}  // namespace

void GgufWriter::add_int(const std::string& key, int64_t value) {
  if (value >= INT32_MIN && value <= INT32_MAX) {
    kv_.push_back(key_and_type(key, kI32));
    put<int32_t>(kv_.back(), static_cast<int32_t>(value));
  } else {
    kv_.push_back(key_and_type(key, kI64));
    put<int64_t>(kv_.back(), value);
  }
}

void GgufWriter::add_uint32(const std::string& key, uint32_t value) {
  kv_.push_back(key_and_type(key, kU32));
  put<uint32_t>(kv_.back(), value);
}

void GgufWriter::add_float(const std::string& key, float value) {
  kv_.push_back(key_and_type(key, kF32));
  put<float>(kv_.back(), value);
}

void GgufWriter::add_bool(const std::string& key, bool value) {
  kv_.push_back(key_and_type(key, kBool));
  put<uint8_t>(kv_.back(), value ? 1 : 0);
}

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  kv_.push_back(key_and_type(key, kString));
  put_string(kv_.back(), value);
}

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  kv_.push_back(key_and_type(key, kArray));
  put<uint32_t>(kv_.back(), kString);
  put<uint64_t>(kv_.back(), values.size());
  for (const std::string& v : values) put_string(kv_.back(), v);
}

void GgufWriter::add_float_array(const std::string& key, const std::vector<float>& values) {
  kv_.push_back(key_and_type(key, kArray));
  put<uint32_t>(kv_.back(), kF32);
  put<uint64_t>(kv_.back(), values.size());
  for (float v : values) put<float>(kv_.back(), v);
}

void GgufWriter::add_int_array(const std::string& key, const std::vector<int32_t>& values) {
  kv_.push_back(key_and_type(key, kArray));
  put<uint32_t>(kv_.back(), kI32);
  put<uint64_t>(kv_.back(), values.size());
  for (int32_t v : values) put<int32_t>(kv_.back(), v);
}

void GgufWriter::add_value(const std::string& key, const GgufValue& value) {
  kv_.push_back(key_and_type(key, value.type));
  put_value(kv_.back(), value);
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                            std::vector<uint8_t> bytes) {
  DUET_CHECK(!shape.empty() && shape.size() <= 4);
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  const std::optional<uint64_t> row_bytes = dtype_row_bytes(type, shape.back());
  uint64_t expected = 0;
  DUET_CHECK(row_bytes &&
             !__builtin_mul_overflow(*row_bytes, static_cast<uint64_t>(rows), &expected));
  DUET_CHECK(expected == bytes.size());
  tensors_.push_back({name, type, shape, std::move(bytes)});
}

void GgufWriter::add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  add_tensor(name, DType::F32, shape, std::move(bytes));
}

Status GgufWriter::write(const std::string& path) const {
  // Header, metadata and tensor infos are built in memory; tensor data is
  // written straight from each pending tensor (no second copy of the weights).
  std::vector<uint8_t> head;
  head.insert(head.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size());
  for (const auto& kv : kv_) head.insert(head.end(), kv.begin(), kv.end());

  uint64_t offset = 0;  // relative to the data section; each tensor starts aligned
  for (const PendingTensor& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it)
      put<uint64_t>(head, *it);  // ne[0] first
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset += (t.bytes.size() + kAlignment - 1) / kAlignment * kAlignment;
  }
  pad_to_alignment(head);

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return make_error(path, ": cannot create: ", std::strerror(errno));
  const uint8_t zeros[kAlignment] = {};
  uint64_t total = head.size();
  bool wrote = std::fwrite(head.data(), 1, head.size(), f) == head.size();
  for (const PendingTensor& t : tensors_) {
    if (!wrote) break;
    const size_t pad = (kAlignment - t.bytes.size() % kAlignment) % kAlignment;
    wrote = std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size() &&
            std::fwrite(zeros, 1, pad, f) == pad;
    total += t.bytes.size() + pad;
  }
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !wrote) {
    return make_error(path, ": cannot write ", total,
                      " bytes: ", std::strerror(wrote ? errno : write_errno));
  }
  return ok_status();
}

}  // namespace duet
