// Safetensors reader: single files and index.json-sharded checkpoints.
//
// The JSON header is validated field by field (rather than letting nlohmann
// throw on a missing key) so every error names the file, the tensor and what
// was expected. Tensor data stays in the mapped shards.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "io/json_input.h"
#include "io/quote.h"

namespace duet {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The safetensors reference implementation rejects headers above 100 MB; a
// larger value means a corrupt length, not a real header.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* const kIndexName = "model.safetensors.index.json";
const char* const kSingleName = "model.safetensors";

std::optional<DType> dtype_from_safetensors(const std::string& s) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  return std::nullopt;
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path, ": cannot open: ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A shard named by the index must sit beside it: a plain file name, so that an
// index cannot point the loader at files elsewhere ("../x", "/dev/zero").
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

Result<std::vector<TensorInfo>> parse_safetensors(const std::string& path, const uint8_t* file_data,
                                                  uint64_t file_size) {
  if (file_size < 8) {
    return make_error(path, ": file has ", file_size,
                      " bytes, expected at least 8 (the safetensors header length)");
  }
  uint64_t header_len;
  std::memcpy(&header_len, file_data, 8);
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    return make_error(path, ": header length ", header_len, " exceeds the file (", file_size,
                      " bytes) or the ", kMaxHeaderBytes, "-byte limit; not a safetensors file?");
  }
  const char* header = reinterpret_cast<const char*>(file_data + 8);
  DUET_ASSIGN_OR_RETURN(const json root, parse_json_input(path, std::string_view(header, header_len)));
  if (!root.is_object()) return make_error(path, ": header is not a JSON object");

  const uint64_t data_size = file_size - 8 - header_len;
  const uint8_t* data = file_data + 8 + header_len;
  std::vector<TensorInfo> out;
  for (const auto& item : root.items()) {
    // Named references, not a structured binding: the lambda below captures
    // `name`, which clang before 16 does not allow for bindings.
    const std::string& name = item.key();
    const json& entry = item.value();
    if (name == "__metadata__") continue;
    const auto bad = [&](const auto&... what) {
      return make_error(path, ": tensor ", quote(name), ": ", what...);
    };
    if (!entry.is_object()) return bad("entry is not a JSON object");
    const auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return bad("missing string \"dtype\"");
    const std::string dtype_str = dtype_it->get<std::string>();
    const std::optional<DType> dtype = dtype_from_safetensors(dtype_str);
    if (!dtype)
      return bad("dtype ", quote(dtype_str), " is not supported (duet reads F32, F16, BF16)");

    const auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) return bad("missing array \"shape\"");
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    uint64_t numel = 1;
    for (const json& dim : *shape_it) {
      if (!dim.is_number_unsigned())
        return bad("shape entries must be non-negative integers, got ", quote(dim.dump()));
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, d, &numel) ||
          numel > static_cast<uint64_t>(INT64_MAX)) {
        return bad("shape ", quote(shape_it->dump()), " overflows int64");
      }
      info.shape.push_back(static_cast<int64_t>(d));
    }

    const auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      return bad("\"data_offsets\" must be [begin, end] with non-negative integers");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return bad("data_offsets [", begin, ", ", end, "] outside the data section of ", data_size,
                 " bytes (file is ", file_size, " bytes)");
    }
    uint64_t expected = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_block_bytes(*dtype)),
                               &expected) ||
        expected != end - begin) {
      return bad("shape ", quote(shape_it->dump()), " of ", dtype_str, " needs ", numel, " x ",
                 dtype_block_bytes(*dtype), " bytes, but data_offsets span ", end - begin);
    }
    info.data = data + begin;
    info.nbytes = end - begin;
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.data < b.data; });
  return out;
}

Result<SafetensorsIndex> parse_safetensors_index(const std::string& path, std::string_view text) {
  DUET_ASSIGN_OR_RETURN(const json index, parse_json_input(path, text));
  const auto map_it = index.is_object() ? index.find("weight_map") : index.end();
  if (!index.is_object() || map_it == index.end() || !map_it->is_object()) {
    return make_error(path, ": expected an object with a \"weight_map\" object");
  }
  SafetensorsIndex out;
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string()) {
      return make_error(path, ": weight_map entry for ", quote(tensor), " is not a file name");
    }
    const std::string file = shard.get<std::string>();
    if (!is_plain_file_name(file)) {
      return make_error(path, ": weight_map puts tensor ", quote(tensor), " in ", quote(file),
                        ", expected a file name in the index's directory");
    }
    // Each distinct shard once, in order of first mention.
    const auto it = std::find(out.shards.begin(), out.shards.end(), file);
    out.weight_map.emplace_back(tensor, static_cast<size_t>(it - out.shards.begin()));
    if (it == out.shards.end()) out.shards.push_back(file);
  }
  return out;
}

Result<SafetensorsModel> SafetensorsModel::open(const std::string& path_arg) {
  std::error_code ec;
  fs::path path = path_arg;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / kIndexName, ec)) {
      path /= kIndexName;
    } else if (fs::exists(path / kSingleName, ec)) {
      path /= kSingleName;
    } else {
      return make_error(path_arg, ": directory holds neither ", kIndexName, " nor ", kSingleName);
    }
  }
  SafetensorsModel model;
  model.directory_ = path.parent_path().empty() ? "." : path.parent_path().string();

  // The shard files to read; for a single file, just that file.
  SafetensorsIndex index;
  const std::string name = path.filename().string();
  const bool is_index = name.size() > 5 && name.ends_with(".json");
  if (is_index) {
    DUET_ASSIGN_OR_RETURN(const std::string text, read_text_file(path.string()));
    DUET_ASSIGN_OR_RETURN(index, parse_safetensors_index(path.string(), text));
  } else {
    index.shards.push_back(name);
  }

  std::vector<size_t> shard_end;  // tensors_[shard_end[k-1], shard_end[k]) come from shard k
  for (const std::string& shard : index.shards) {
    const std::string shard_path = (fs::path(model.directory_) / shard).string();
    Result<MappedFile> file = MappedFile::open(shard_path);
    if (!file.ok()) {
      if (!is_index) return file.error();
      return make_error(path.string(), ": shard ", quote(shard), " is missing or unreadable (",
                        file.message(), ")");
    }
    model.shards_.push_back(std::make_unique<MappedFile>(std::move(file).value()));
    const MappedFile& mapped = *model.shards_.back();
    DUET_ASSIGN_OR_RETURN(std::vector<TensorInfo> tensors,
                          parse_safetensors(mapped.path(), mapped.data(), mapped.size()));
    std::move(tensors.begin(), tensors.end(), std::back_inserter(model.tensors_));
    shard_end.push_back(model.tensors_.size());
  }

  for (size_t i = 0; i < model.tensors_.size(); ++i) {
    if (!model.tensor_index_.emplace(model.tensors_[i].name, i).second) {
      return make_error(path.string(), ": tensor ", quote(model.tensors_[i].name),
                        " appears in more than one shard");
    }
  }
  // The index must not promise tensors its shards do not hold where it says.
  for (const auto& [tensor, k] : index.weight_map) {
    const auto it = model.tensor_index_.find(tensor);
    const bool in_shard = it != model.tensor_index_.end() && it->second < shard_end[k] &&
                          (k == 0 || it->second >= shard_end[k - 1]);
    if (!in_shard) {
      return make_error(path.string(), ": weight_map puts tensor ", quote(tensor), " in ",
                        quote(index.shards[k]), ", but that shard does not contain it");
    }
  }
  return model;
}

const TensorInfo* SafetensorsModel::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace duet
