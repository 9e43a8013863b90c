#include "train/checkpoint.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

namespace duet::train {
namespace {

constexpr char kMagic[8] = {'D', 'U', 'E', 'T', 'C', 'K', 'P', 'T'};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

template <class T>
void put(std::string& out, const T& value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

void put_floats(std::string& out, const std::vector<float>& v) {
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

}  // namespace

Status save_checkpoint(const Checkpoint& c, const std::string& path) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const ParamTensor& t : c.layout.tensors) {
    tensors.push_back({{"name", t.name}, {"layer", t.layer}, {"offset", t.offset}, {"shape", t.shape}});
  }
  const nlohmann::json header = {{"identity", c.identity}, {"stage", c.stage}, {"step", c.step},
                                 {"total", c.layout.total}, {"tensors", tensors}};
  const std::string text = header.dump();
  std::string bytes(kMagic, sizeof(kMagic));
  put(bytes, kVersion);
  put(bytes, static_cast<uint64_t>(text.size()));
  bytes += text;
  put_floats(bytes, c.params);
  put_floats(bytes, c.m);
  put_floats(bytes, c.v);
  put(bytes, fnv1a(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  // Written beside the target and renamed, so an interrupted save leaves the previous checkpoint intact.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return make_error("cannot write checkpoint ", path);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) return make_error("cannot write checkpoint ", path, " (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return make_error("cannot write checkpoint ", path, ": ", ec.message());
  return ok_status();
}

Result<Checkpoint> load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot open checkpoint ", path, " (no such file?)");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t fixed = sizeof(kMagic) + sizeof(uint32_t) + sizeof(uint64_t);
  if (bytes.size() < fixed + sizeof(uint64_t) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return make_error("checkpoint ", path, " is not a duet checkpoint (bad magic or too short)");
  }
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - sizeof(uint64_t), sizeof(uint64_t));
  if (fnv1a(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size() - sizeof(uint64_t)) != stored) {
    return make_error("checkpoint ", path, " is corrupt (checksum mismatch); delete it or run without --resume");
  }
  uint32_t version = 0;
  uint64_t header_len = 0;
  std::memcpy(&version, bytes.data() + sizeof(kMagic), sizeof(version));
  std::memcpy(&header_len, bytes.data() + sizeof(kMagic) + sizeof(version), sizeof(header_len));
  if (version != kVersion) return make_error("checkpoint ", path, " has format version ", version, ", expected ", kVersion);
  if (header_len > bytes.size() - fixed - sizeof(uint64_t)) return make_error("checkpoint ", path, " is truncated");
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(fixed, header_len), nullptr, false);
  if (header.is_discarded() || !header.contains("tensors")) {
    return make_error("checkpoint ", path, " has an unreadable header");
  }
  Checkpoint c;
  try {
    c.identity = header.at("identity").get<std::string>();
    c.stage = header.at("stage").get<int>();
    c.step = header.at("step").get<int64_t>();
    c.layout.total = header.at("total").get<int64_t>();
    for (const auto& t : header.at("tensors")) {
      c.layout.tensors.push_back({t.at("name").get<std::string>(), t.at("layer").get<int>(),
                                  t.at("offset").get<int64_t>(), t.at("shape").get<std::vector<int64_t>>()});
    }
  } catch (const nlohmann::json::exception& e) {
    return make_error("checkpoint ", path, " has an unreadable header: ", e.what());
  }
  const uint64_t payload = static_cast<uint64_t>(c.layout.total) * 3 * sizeof(float);
  if (c.layout.total < 0 || fixed + header_len + payload + sizeof(uint64_t) != bytes.size()) {
    return make_error("checkpoint ", path, " is truncated or has trailing bytes");
  }
  const char* p = bytes.data() + fixed + header_len;
  for (std::vector<float>* v : {&c.params, &c.m, &c.v}) {
    v->resize(c.layout.total);
    std::memcpy(v->data(), p, c.layout.total * sizeof(float));
    p += c.layout.total * sizeof(float);
  }
  return c;
}

}  // namespace duet::train
