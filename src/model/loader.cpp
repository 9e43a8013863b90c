// load_weights: picks the checkpoint format from the path.
#include "model/loader.h"

#include <filesystem>
#include <fstream>

#include "io/text_file.h"

namespace duet {
namespace fs = std::filesystem;

namespace {

// The config.json that sits beside an HF checkpoint's safetensors files.
Result<std::string> hf_config_text(const SafetensorsModel& tensors) {
  return read_text_file((fs::path(tensors.directory()) / "config.json").string());
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Result<CheckpointFormat> detect_checkpoint_format(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return make_error("model '", path, "' does not exist");
  if (fs::is_directory(path, ec) || ends_with(path, ".safetensors") || ends_with(path, ".json")) {
    return CheckpointFormat::Safetensors;
  }
  if (ends_with(path, ".gguf")) return CheckpointFormat::Gguf;
  // Unknown extension: trust the magic bytes.
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  if (in && std::string(magic, 4) == "GGUF") return CheckpointFormat::Gguf;
  return make_error("model '", path, "' is neither a GGUF file nor a safetensors checkpoint");
}

Result<ModelConfig> load_config(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(CheckpointFormat format, detect_checkpoint_format(path));
  if (format == CheckpointFormat::Gguf) {
    DUET_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(path));
    return config_from_gguf(file);
  }
  DUET_ASSIGN_OR_RETURN(SafetensorsModel tensors, SafetensorsModel::open(path));
  DUET_ASSIGN_OR_RETURN(std::string config, hf_config_text(tensors));
  return config_from_hf_json(config);
}

Result<ModelWeights> load_weights(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(CheckpointFormat format, detect_checkpoint_format(path));
  if (format == CheckpointFormat::Gguf) {
    DUET_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(path));
    return load_weights_gguf(file);
  }
  DUET_ASSIGN_OR_RETURN(SafetensorsModel tensors, SafetensorsModel::open(path));
  DUET_ASSIGN_OR_RETURN(std::string config, hf_config_text(tensors));
  return load_weights_hf(tensors, config);
}

}  // namespace duet
