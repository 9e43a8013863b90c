// duet info: architecture, shapes, parameter count and depth under an LP plan.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"

namespace duet::cli {
namespace {

void run(const ModelOptions& o) {
  LoadedModel m = value_or_fail(load(o));
  const ModelConfig& c = m.weights.config;
  std::printf("model            %s\n", m.path.c_str());
  std::printf("architecture     %s\n", arch_name(c.arch));
  std::printf("layers           %d\n", m.original_depth);
  std::printf("model dim        %d\n", c.dim);
  std::printf("heads            %d query, %d key/value, head dim %d\n", c.n_heads, c.n_kv_heads, c.head_dim);
  std::printf("ffn dim          %d\n", c.ffn_dim);
  std::printf("vocab            %d%s\n", c.vocab_size, c.tied_embeddings ? " (output tied to embeddings)" : "");
  std::printf("context          %d\n", c.max_context);
  std::printf("rope             theta %g, %s pairs%s\n", c.rope_theta,
              c.rope_style == RopeStyle::Interleaved ? "interleaved" : "half-split",
              c.rope_freq_factors.empty() ? "" : ", scaled frequencies");
  std::printf("parameters       %lld (%.1f M)\n", static_cast<long long>(m.original_parameters), m.original_parameters / 1e6);
  std::printf("LP pairs         %s\n", m.plan.describe().c_str());
  std::printf("effective depth  %d\n", m.weights.depth());
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto options = std::make_shared<ModelOptions>();
  CLI::App* cmd = app.add_subcommand("info", "print architecture, shapes, parameter count and effective depth");
  options->add_to(*cmd, /*with_ctx=*/false);
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
