// duet run: stream a continuation of a prompt (given as an argument, in a
// file, or on standard input with `-f -`).
#include <cstdio>
#include <iostream>
#include <iterator>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/tp_launch.h"
#include "io/text_file.h"
#include "runtime/generate.h"

namespace duet::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  std::string prompt;
  std::string prompt_file;  // "-": standard input
  int max_new_tokens = 128;
  SamplingParams sampling;
  bool chat = false;
  bool stats = false;
};

std::string prompt_text(const RunOptions& o) {
  if (o.prompt_file.empty()) return o.prompt;
  if (o.prompt_file != "-") return value_or_fail(read_text_file(o.prompt_file));
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (std::cin.bad()) fail("cannot read the prompt from standard input");
  return text;
}

void run(const RunOptions& o) {
  const auto job = value_or_fail(TpJob::join(o.model));  // under mpirun: this process's rank
  if (job->follower()) return job->follow(o.model);
  if (o.prompt_file.empty() == o.prompt.empty()) {
    fail("give the prompt either as an argument or with -f/--prompt-file FILE ('-' reads standard input), not both");
  }
  const std::string given = prompt_text(o);
  if (given.empty()) fail("the prompt is empty");
  LoadedModel m = value_or_fail(load(o.model));
  std::string text = given;
  if (o.chat) text = value_or_fail(m.tokenizer.apply_chat_template({{"user", given}}, true));
  const std::vector<int32_t> prompt = m.tokenizer.encode(text, m.tokenizer.add_bos_default(), /*parse_special=*/true);
  const int capacity = o.model.ctx > 0 ? o.model.ctx : static_cast<int>(prompt.size()) + o.max_new_tokens;
  if (capacity > m.weights.config.max_context) {
    fail(str_cat("prompt of ", prompt.size(), " tokens plus ", o.max_new_tokens, " new tokens exceeds the model's context of ",
                 m.weights.config.max_context));
  }
  auto decoder = value_or_fail(job->make_decoder(m.weights, o.model, capacity));
  GenerateOptions options;
  options.max_new_tokens = o.max_new_tokens;
  options.sampling = o.sampling;
  options.is_end_of_generation = [&](int32_t t) { return m.tokenizer.is_end_of_generation(t); };
  auto result = value_or_fail(generate(*decoder, prompt, options, [&](int32_t token) {
    if (m.tokenizer.is_end_of_generation(token)) return;
    const std::string piece = m.tokenizer.token_text(token);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }));
  std::printf("\n");
  if (o.stats) {
    std::fprintf(stderr, "prompt %d tokens, prefill %.1f tok/s, decode %.1f tok/s, depth %d (LP pairs: %s)\n",
                 result.prompt_tokens, result.prefill_tokens_per_second(), result.decode_tokens_per_second(),
                 m.weights.depth(), m.plan.describe().c_str());
  }
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "generate a continuation of PROMPT and stream it to stdout");
  options->model.add_to(*cmd);
  options->model.add_tp_to(*cmd);
  options->model.add_cpu_math_to(*cmd);
  cmd->add_option("prompt", options->prompt, "the prompt text");
  cmd->add_option("-f,--prompt-file", options->prompt_file, "read the prompt from FILE ('-': standard input)");
  cmd->add_option("-n,--max-tokens", options->max_new_tokens, "tokens to generate")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temp", options->sampling.temperature, "temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", options->sampling.top_k, "sample among the k most likely tokens; 0 = all")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", options->sampling.top_p, "nucleus sampling mass")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", options->sampling.seed, "random seed for sampling")->capture_default_str();
  cmd->add_flag("--chat", options->chat, "wrap the prompt in the model's chat template as a user message");
  cmd->add_flag("--stats", options->stats, "print prefill/decode speed to stderr at the end");
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
