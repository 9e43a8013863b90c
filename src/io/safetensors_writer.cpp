// SafetensorsWriter: writes one .safetensors file (tests build checkpoints with it).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "io/safetensors.h"

namespace duet {
namespace {

const char* safetensors_dtype(DType type) {
  switch (type) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    default: return nullptr;
  }
}

}  // namespace

void SafetensorsWriter::add_tensor(const std::string& name, DType type,
                                   const std::vector<int64_t>& shape, std::vector<uint8_t> bytes) {
  DUET_CHECK(safetensors_dtype(type) != nullptr);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  DUET_CHECK(static_cast<uint64_t>(numel * dtype_block_bytes(type)) == bytes.size());
  tensors_.push_back({name, type, shape, std::move(bytes)});
}

void SafetensorsWriter::add_tensor_f32(const std::string& name, const std::vector<int64_t>& shape,
                                       const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  // An empty tensor's vectors hold no buffer, and memcpy from null is undefined even for 0 bytes (UBSan).
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  add_tensor(name, DType::F32, shape, std::move(bytes));
}

Status SafetensorsWriter::write(const std::string& path) const {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const Pending& t : tensors_) {
    header[t.name] = {{"dtype", safetensors_dtype(t.type)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  // Like the reference writer, pad with spaces so the data section starts 8-aligned.
  text.resize((text.size() + 7) / 8 * 8, ' ');

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return make_error(path, ": cannot create: ", std::strerror(errno));
  const uint64_t header_len = text.size();
  bool wrote = std::fwrite(&header_len, 8, 1, f) == 1 &&
               std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const Pending& t : tensors_) {
    wrote = wrote && std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size();
  }
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !wrote) {
    return make_error(path, ": cannot write: ", std::strerror(wrote ? errno : write_errno));
  }
  return ok_status();
}

}  // namespace duet
