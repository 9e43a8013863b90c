// duet ppl: perplexity of a text file (sliding window; see eval/perplexity.h).
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/tp_launch.h"
#include "eval/perplexity.h"
#include "io/text_file.h"

namespace duet::cli {
namespace {

struct PplOptions {
  ModelOptions model;
  std::string file;
  int stride = 0;
  int max_tokens = 0;
};

void run(const PplOptions& o) {
  const auto job = value_or_fail(TpJob::join(o.model));  // under mpirun: this process's rank
  if (job->follower()) return job->follow(o.model);
  const std::string text = value_or_fail(read_text_file(o.file));
  LoadedModel m = value_or_fail(load(o.model));
  std::vector<int32_t> tokens = m.tokenizer.encode(text, m.tokenizer.add_bos_default(), /*parse_special=*/false);
  if (o.max_tokens > 0 && static_cast<int>(tokens.size()) > o.max_tokens) tokens.resize(o.max_tokens);
  PerplexityOptions options;
  options.context = o.model.ctx > 0 ? o.model.ctx : 512;
  options.stride = o.stride > 0 ? o.stride : options.context / 2;
  if (options.context > m.weights.config.max_context) {
    fail(str_cat("--ctx ", options.context, " exceeds the model's context of ", m.weights.config.max_context));
  }
  options.on_progress = [](int done, int total, double ppl) {
    std::fprintf(stderr, "\rppl: window %d/%d, running ppl %.4f", done, total, ppl);
    if (done == total) std::fprintf(stderr, "\n");
  };
  auto decoder = value_or_fail(job->make_decoder(m.weights, o.model, options.context));
  const PerplexityResult r = value_or_fail(perplexity(*decoder, tokens, options));
  std::printf("model %s, LP pairs %s, depth %d, ctx %d, stride %d\n", m.path.c_str(), m.plan.describe().c_str(),
              m.weights.depth(), options.context, options.stride);
  std::printf("{\"ppl\": %.6f, \"tokens\": %lld}\n", r.ppl, static_cast<long long>(r.tokens_scored));
}

}  // namespace

void add_ppl_command(CLI::App& app) {
  auto options = std::make_shared<PplOptions>();
  CLI::App* cmd = app.add_subcommand(
      "ppl", "perplexity of a text file; the last line is JSON {\"ppl\": ..., \"tokens\": ...}");
  options->model.add_to(*cmd);
  options->model.add_tp_to(*cmd);
  options->model.add_cpu_math_to(*cmd);
  cmd->add_option("-f,--file", options->file, "UTF-8 text file")->required();
  cmd->add_option("--stride", options->stride, "tokens between window starts (default: ctx/2; ctx defaults to 512)");
  cmd->add_option("--max-tokens", options->max_tokens, "score only the first N tokens of the file");
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
