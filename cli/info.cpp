// duet info: architecture, shapes, parameter count and depth under an LP plan
// (given with --lp, or baked into a file by duet export).
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"

namespace duet::cli {
namespace {

// "0-9 9/3/1536, 10 18/6/3072, ...": runs of layers with the same heads/KV heads/FFN width.
std::string layer_widths(const ModelWeights& w) {
  std::string out;
  for (int start = 0; start < w.depth();) {
    const LayerWeights& a = w.layers[start];
    int end = start;
    while (end + 1 < w.depth() && w.layers[end + 1].n_heads == a.n_heads && w.layers[end + 1].n_kv_heads == a.n_kv_heads &&
           w.layers[end + 1].ffn_dim == a.ffn_dim) {
      ++end;
    }
    out += (out.empty() ? "" : ", ") + std::to_string(start) + (end > start ? "-" + std::to_string(end) : "") + " " +
           std::to_string(a.n_heads) + "/" + std::to_string(a.n_kv_heads) + "/" + std::to_string(a.ffn_dim);
    start = end + 1;
  }
  return out;
}

void run(const ModelOptions& o) {
  LoadedModel m = value_or_fail(load(o));
  const ModelConfig& c = m.weights.config;
  // LP pairs a file carries from duet export (each wide layer knows its two source layers).
  LpPlan baked;
  int source_depth = 0;
  bool uniform = true;
  for (const LayerWeights& l : m.weights.layers) {
    if (l.source_layers.size() == 2) baked.pair_starts.push_back(l.source_layers[0]);
    source_depth += static_cast<int>(l.source_layers.size());
    const LayerWeights& first = m.weights.layers.front();
    uniform = uniform && l.n_heads == first.n_heads && l.n_kv_heads == first.n_kv_heads && l.ffn_dim == first.ffn_dim;
  }
  std::printf("model            %s\n", m.path.c_str());
  std::printf("architecture     %s\n", arch_name(c.arch));
  if (baked.empty() || !m.plan.empty()) {
    std::printf("layers           %d\n", m.original_depth);
  } else {
    std::printf("layers           %d (%d before the LP pairs baked into the file)\n", m.original_depth, source_depth);
    std::printf("baked LP pairs   %s\n", baked.describe().c_str());
  }
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
  if (!uniform) std::printf("layer widths     %s (layers heads/KV heads/FFN)\n", layer_widths(m.weights).c_str());
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto options = std::make_shared<ModelOptions>();
  CLI::App* cmd = app.add_subcommand("info", "print architecture, shapes, parameter count and effective depth");
  options->add_to(*cmd, /*with_ctx=*/false);
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
