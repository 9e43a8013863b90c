// duet demo: the default model with and without an LP plan, side by side:
// effective depth, prefill and decode speed, perplexity on a short built-in
// text, and the greedy continuation of a prompt.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "eval/perplexity.h"
#include "model/lp_merge.h"
#include "runtime/generate.h"

namespace duet::cli {
namespace {

// A short original passage: plain English prose for a quick perplexity check.
constexpr const char* kDemoText =
    "The lighthouse stood at the end of a long stone pier, and for more than a hundred years its keepers had "
    "climbed the narrow stairs each evening to light the lamp. Ships passing in the night relied on its steady "
    "beam to find the harbour entrance, especially in winter, when storms rolled in from the sea without warning. "
    "The last keeper retired when the light was automated, but the town still remembers the families who lived "
    "in the small cottage at its base. Children would bring them bread and news from the market, and in return "
    "they heard stories of shipwrecks, rescues and the strange lights that sometimes appeared on the water. "
    "Today the cottage is a small museum. Visitors can see the old logbooks, in which every change of weather "
    "was written down by hand, together with the names of the ships that passed and the hours they were seen.";

constexpr const char* kDemoPrompt = "Explain in two sentences why the sky is blue.";

struct DemoOptions {
  ModelOptions model;
  int max_new_tokens = 48;
};

struct Column {
  std::string name;
  int depth = 0;
  double prefill_tps = 0, decode_tps = 0, ppl = 0;
  std::string text;
};

Column measure(const std::string& name, const ModelWeights& weights, const Tokenizer& tokenizer,
               const DemoOptions& o) {
  std::fprintf(stderr, "demo: running %s (depth %d)...\n", name.c_str(), weights.depth());
  Column col;
  col.name = name;
  col.depth = weights.depth();
  const std::vector<int32_t> text_tokens = tokenizer.encode(kDemoText, tokenizer.add_bos_default(), false);
  const std::string chat = value_or_fail(tokenizer.apply_chat_template({{"user", kDemoPrompt}}, true));
  const std::vector<int32_t> prompt = tokenizer.encode(chat, tokenizer.add_bos_default(), true);
  const int capacity = static_cast<int>(std::max(text_tokens.size() + 1, prompt.size() + o.max_new_tokens));
  auto decoder = value_or_fail(make_decoder(weights, o.model.device, capacity));

  PerplexityOptions ppl_options;
  ppl_options.context = ppl_options.stride = static_cast<int>(text_tokens.size());
  col.ppl = value_or_fail(perplexity(*decoder, text_tokens, ppl_options)).ppl;

  // Prefill speed on the longer text; decode speed and text from the chat prompt.
  GenerateOptions prefill_only;
  prefill_only.max_new_tokens = 1;
  col.prefill_tps = value_or_fail(generate(*decoder, text_tokens, prefill_only)).prefill_tokens_per_second();

  GenerateOptions options;
  options.max_new_tokens = o.max_new_tokens;
  options.is_end_of_generation = [&](int32_t t) { return tokenizer.is_end_of_generation(t); };
  GenerateResult r = value_or_fail(generate(*decoder, prompt, options));
  col.decode_tps = r.decode_tokens_per_second();
  if (!r.tokens.empty() && tokenizer.is_end_of_generation(r.tokens.back())) r.tokens.pop_back();
  col.text = tokenizer.decode(r.tokens);
  return col;
}

void run(DemoOptions o) {
  if (o.model.lp_range.empty() && o.model.lp_pairs.empty() && o.model.lp_plan_file.empty()) o.model.lp_range = "10:26";
  set_threads(o.model.threads);
  const LpPlan plan = value_or_fail(o.model.plan());
  LoadedModel base = value_or_fail(load_model(o.model.model, {}));
  std::fprintf(stderr, "demo: loaded %s (%d layers, %.1f M parameters)\n", base.path.c_str(), base.original_depth,
               base.original_parameters / 1e6);
  const ModelWeights lp_weights = value_or_fail(apply_lp_plan(base.weights, plan));
  const std::string lp_name = "LP " + (o.model.lp_range.empty() ? plan.describe() : o.model.lp_range);
  const Column a = measure("baseline", base.weights, base.tokenizer, o);
  const Column b = measure(lp_name, lp_weights, base.tokenizer, o);

  std::printf("\nduet demo: %s on %s\n\n", base.path.c_str(), o.model.device.c_str());
  std::printf("%-22s %14s %14s\n", "", a.name.c_str(), b.name.c_str());
  std::printf("%-22s %14d %14d\n", "effective depth", a.depth, b.depth);
  std::printf("%-22s %14.1f %14.1f\n", "prefill tokens/s", a.prefill_tps, b.prefill_tps);
  std::printf("%-22s %14.1f %14.1f\n", "decode tokens/s", a.decode_tps, b.decode_tps);
  std::printf("%-22s %14.3f %14.3f\n", "perplexity (demo text)", a.ppl, b.ppl);
  std::printf("\nprompt (chat): %s\n", kDemoPrompt);
  std::printf("\n[%s]\n%s\n", a.name.c_str(), a.text.c_str());
  std::printf("\n[%s]\n%s\n", b.name.c_str(), b.text.c_str());
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "the model with and without an LP plan (default --lp 10:26), side by side: depth, speed, "
              "perplexity on a built-in text, greedy continuation of a chat prompt");
  options->model.add_to(*cmd, /*with_ctx=*/false);
  cmd->add_option("-n,--max-tokens", options->max_new_tokens, "tokens to generate per model")->capture_default_str();
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
