// duet logits: float32 logits [T, V] for every prompt position, as .npy.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/tp_launch.h"
#include "io/npy.h"

namespace duet::cli {
namespace {

struct LogitsOptions {
  ModelOptions model;
  std::string prompt, output;
  bool bos = false;
};

void run(const LogitsOptions& o) {
  const auto job = value_or_fail(TpJob::join(o.model));  // under mpirun: this process's rank
  if (job->follower()) return job->follow(o.model);
  LoadedModel m = value_or_fail(load(o.model));
  const std::vector<int32_t> tokens = m.tokenizer.encode(o.prompt, o.bos, /*parse_special=*/true);
  if (tokens.empty()) fail("the prompt tokenizes to no tokens");
  const int T = static_cast<int>(tokens.size());
  if (T > m.weights.config.max_context) {
    fail(str_cat("prompt of ", T, " tokens exceeds the model's context of ", m.weights.config.max_context));
  }
  auto decoder = value_or_fail(job->make_decoder(m.weights, o.model, T));
  std::vector<float> logits;
  check_or_fail(decoder->forward(tokens.data(), T, LogitsMode::All, logits));
  check_or_fail(write_npy_f32(o.output, logits.data(), {T, decoder->vocab_size()}));
  std::fprintf(stderr, "wrote %s: [%d, %d] float32 logits\n", o.output.c_str(), T, decoder->vocab_size());
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto options = std::make_shared<LogitsOptions>();
  CLI::App* cmd = app.add_subcommand("logits", "write float32 logits [T, V] of every prompt position to .npy");
  cmd->footer("The prompt is tokenized with special-token text (e.g. <|im_start|>) parsed. No BOS token is added "
              "unless --bos is given.");
  options->model.add_to(*cmd, /*with_ctx=*/false);
  options->model.add_tp_to(*cmd);
  options->model.add_cpu_math_to(*cmd);
  cmd->add_option("--prompt", options->prompt, "prompt text")->required();
  cmd->add_option("-o,--output", options->output, "output .npy path")->required();
  cmd->add_flag("--bos", options->bos, "prepend the BOS token");
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
