#include "runtime/loaded_model.h"

#include <filesystem>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/text_file.h"
#include "model/loader.h"
#include "model/lp_merge.h"

namespace duet {
namespace fs = std::filesystem;

namespace {

Result<Tokenizer> hf_tokenizer(const fs::path& dir) {
  const fs::path config = dir / "tokenizer_config.json";
  return Tokenizer::from_hf_files((dir / "tokenizer.json").string(), fs::exists(config) ? config.string() : "");
}

}  // namespace

Result<Tokenizer> load_tokenizer(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(CheckpointFormat format, detect_checkpoint_format(path));
  if (format == CheckpointFormat::Gguf) {
    DUET_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(path));
    return Tokenizer::from_gguf(file);
  }
  DUET_ASSIGN_OR_RETURN(SafetensorsModel tensors, SafetensorsModel::open(path));
  return hf_tokenizer(tensors.directory());
}

Result<LoadedModel> load_model(const std::string& path, const LpPlan& plan) {
  DUET_ASSIGN_OR_RETURN(CheckpointFormat format, detect_checkpoint_format(path));
  Result<ModelWeights> weights = make_error("unreachable");
  Result<Tokenizer> tokenizer = make_error("unreachable");
  if (format == CheckpointFormat::Gguf) {
    DUET_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(path));
    weights = load_weights_gguf(file);
    if (weights.ok()) tokenizer = Tokenizer::from_gguf(file);
  } else {
    DUET_ASSIGN_OR_RETURN(SafetensorsModel tensors, SafetensorsModel::open(path));
    const fs::path dir = tensors.directory();
    DUET_ASSIGN_OR_RETURN(std::string config_json, read_text_file((dir / "config.json").string()));
    weights = load_weights_hf(tensors, config_json);
    if (weights.ok()) tokenizer = hf_tokenizer(dir);
  }
  if (!weights.ok()) return weights.error();
  if (!tokenizer.ok()) return tokenizer.error();
  const int depth = weights->depth();
  const int64_t parameters = weights->parameter_count();
  DUET_ASSIGN_OR_RETURN(ModelWeights merged, apply_lp_plan(std::move(weights).value(), plan));
  return LoadedModel{path, std::move(merged), plan, depth, parameters, std::move(tokenizer).value()};
}

}  // namespace duet
