// duet export: writes a model, with an LP plan baked in, as a GGUF file that
// duet and stock llama.cpp load (architecture deci; src/model/gguf_export.h).
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/gguf_export.h"

namespace duet::cli {
namespace {

struct ExportOptions {
  std::string model = kDefaultModel;
  LpOptions lp;
  std::string type = "f16";
  std::string output;
  int threads = 0;
};

void run(const ExportOptions& o) {
  const ExportType type = value_or_fail(parse_export_type(o.type));
  const LpPlan plan = value_or_fail(o.lp.plan());
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(o.output).parent_path();
  std::error_code ec;
  if (!dir.empty() && !fs::is_directory(dir, ec)) fail(str_cat("cannot write '", o.output, "': directory '", dir.string(), "' does not exist"));
  if (fs::is_directory(o.output, ec)) fail(str_cat("cannot write '", o.output, "': it is a directory"));

  const auto start = std::chrono::steady_clock::now();
  set_threads(o.threads);
  const LoadedModel m = value_or_fail(load_model(o.model, plan));
  check_or_fail(export_gguf(m, type, o.output));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double mb = static_cast<double>(fs::file_size(o.output, ec)) / 1e6;
  std::printf("wrote %s: deci, %d layers (%d original, LP pairs %s), %s matrices, %.1f MB in %.1f s\n", o.output.c_str(),
              m.weights.depth(), m.original_depth, m.plan.describe().c_str(), o.type.c_str(), mb, seconds);
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto options = std::make_shared<ExportOptions>();
  CLI::App* cmd = app.add_subcommand("export", "write a model with its LP plan baked in as a GGUF file (runs in duet and llama.cpp)");
  cmd->footer(
      "The file uses llama.cpp's 'deci' architecture (per-layer head counts and FFN widths), so an LP wide layer is an "
      "ordinary layer there. Norm gains of LP layers are folded into their weights; norm gains, biases and RoPE factors "
      "stay F32; q8_0 writes F16 for a matrix whose rows are not a multiple of 32. The source must be a GGUF file (its "
      "tokenizer metadata is copied); llama and qwen2 models export, qwen3 (q/k norms) does not. duet loads the result "
      "without --lp.");
  cmd->add_option("-m,--model", options->model, "source GGUF file")->capture_default_str();
  options->lp.add_to(*cmd);
  cmd->add_option("--type", options->type, "encoding of the weight matrices: f32, f16, bf16 or q8_0")->capture_default_str();
  cmd->add_option("-o,--output", options->output, "output .gguf path")->required();
  cmd->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)");
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
