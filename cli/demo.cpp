// duet demo: the model without LP next to the LP plans worth deploying, one
// aggressive plan labelled as such, and any healed model found locally: per
// model the effective depth, prefill and decode speed, perplexity on a built-in
// text, and the greedy answers to two chat prompts.
//
// The plans are plain plan files (plans/, chosen by the dev-set accuracies of
// docs/RESULTS.md); a healed model is an ordinary GGUF that duet loads with its
// depth baked in (`duet heal -o models/healed_*.gguf`), run without a plan.
#include <glob.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iterator>

#include "cli/commands.h"
#include "cli/common.h"
#include "eval/perplexity.h"
#include "model/lp_merge.h"
#include "runtime/generate.h"

namespace duet::cli {
namespace {

// Original prose (two paragraphs, 302 SmolLM2 tokens): plain English for the perplexity column and the
// prefill speed.
constexpr const char* kDemoText =
    "The lighthouse stood at the end of a long stone pier, and for more than a hundred years its keepers had "
    "climbed the narrow stairs each evening to light the lamp. Ships passing in the night relied on its steady "
    "beam to find the harbour entrance, especially in winter, when storms rolled in from the sea without warning. "
    "The last keeper retired when the light was automated, but the town still remembers the families who lived "
    "in the small cottage at its base. Children would bring them bread and news from the market, and in return "
    "they heard stories of shipwrecks, rescues and the strange lights that sometimes appeared on the water. "
    "Today the cottage is a small museum. Visitors can see the old logbooks, in which every change of weather "
    "was written down by hand, together with the names of the ships that passed and the hours they were seen.\n\n"
    "Most visitors arrive in the summer, when the ferry runs twice a day and the cafes along the harbour put "
    "their tables out on the quay. They walk to the end of the pier, read the small signs about the history of "
    "the light, and climb the hill behind the town for the view. In the autumn the town becomes quiet again. "
    "The fishing boats still leave before dawn, the bakery still opens at six, and the school bus still waits "
    "for the last child who is running down the lane. The museum closes for the winter, but the volunteers who "
    "look after it meet every month to sort letters, photographs and maps that people have given them.";

// Two questions with short answers a reader can check (a fact, an explanation), so a complete answer fits
// the token budget and every model's answers can be read for correctness and fluency side by side.
constexpr const char* kDemoPrompts[] = {
    "What is the capital of France, and what is it known for?",
    "What causes the seasons on Earth? Answer in two or three sentences.",
};

// Speed is timed on a fixed number of decode steps (no early stop), so every model decodes as many tokens.
constexpr int kSpeedDecodeSteps = 32;

struct DemoOptions {
  std::string model = kDefaultModel;
  std::string device = "cpu";
  int threads = 0;
  std::string cpu_math = "int8";  // what `duet run` uses by default, so the speeds are the ones a user gets
  std::vector<std::string> plans = {"plans/smollm2_135m_contiguous_2.txt", "plans/smollm2_135m_contiguous_4.txt"};
  std::string aggressive = "plans/smollm2_135m_searched_8.txt";
  std::string healed = "models/healed_*.gguf";
  int max_new_tokens = 96;
};

// One model of the comparison.
struct Entry {
  Entry(std::string n, std::string r, std::string p) : name(std::move(n)), role(std::move(r)), pairs(std::move(p)) {}
  std::string name, role, pairs;  // role: "-", "recommended", "aggressive" or "healed"
  int depth = 0;
  double prefill_tps = 0, decode_tps = 0, ppl = 0;
  std::vector<std::string> answers;   // one per prompt
  std::vector<bool> answers_complete;  // ended with an end-of-generation token within the budget
};

std::string stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

// The token sequences a model runs: the built-in text and the chat prompts, checked against its context.
struct DemoInputs {
  std::vector<int32_t> text;
  std::vector<std::vector<int32_t>> prompts;
  int capacity = 0;  // KV positions the decoder needs
};

Result<DemoInputs> demo_inputs(const Tokenizer& tokenizer, const ModelConfig& config, const DemoOptions& o) {
  DemoInputs in;
  in.text = tokenizer.encode(kDemoText, tokenizer.add_bos_default(), false);
  size_t capacity = in.text.size() + kSpeedDecodeSteps;
  for (const char* question : kDemoPrompts) {
    // A model without a chat template (a base model) gets the question as plain text.
    const Result<std::string> chat = tokenizer.apply_chat_template({{"user", question}}, true);
    in.prompts.push_back(chat.ok() ? tokenizer.encode(chat.value(), tokenizer.add_bos_default(), true)
                                   : tokenizer.encode(question, tokenizer.add_bos_default(), false));
    capacity = std::max(capacity, in.prompts.back().size() + o.max_new_tokens);
  }
  if (capacity > static_cast<size_t>(config.max_context)) {
    return make_error("the demo needs ", capacity, " positions (the built-in text of ", in.text.size(),
                      " tokens and ", kSpeedDecodeSteps,
                      " decode steps, or a prompt and -n tokens); the model's context is ", config.max_context);
  }
  in.capacity = static_cast<int>(capacity);
  return in;
}

void measure(Entry& e, const ModelWeights& weights, const Tokenizer& tokenizer, const DemoInputs& in,
             const DemoOptions& o) {
  std::fprintf(stderr, "demo: running %s (depth %d)...\n", e.name.c_str(), weights.depth());
  e.depth = weights.depth();
  const CpuArithmetic arithmetic = o.cpu_math == "float32" ? CpuArithmetic::kFloat32 : CpuArithmetic::kInt8;
  auto decoder = value_or_fail(make_decoder(weights, o.device, in.capacity, 1, arithmetic));

  PerplexityOptions ppl_options;
  ppl_options.context = ppl_options.stride = static_cast<int>(in.text.size());
  e.ppl = value_or_fail(perplexity(*decoder, in.text, ppl_options)).ppl;

  GenerateOptions timed;
  timed.max_new_tokens = kSpeedDecodeSteps;
  const GenerateResult speed = value_or_fail(generate(*decoder, in.text, timed));
  e.prefill_tps = speed.prefill_tokens_per_second();
  e.decode_tps = speed.decode_tokens_per_second();

  GenerateOptions answer;
  answer.max_new_tokens = o.max_new_tokens;
  answer.is_end_of_generation = [&](int32_t t) { return tokenizer.is_end_of_generation(t); };
  for (const std::vector<int32_t>& prompt : in.prompts) {
    GenerateResult r = value_or_fail(generate(*decoder, prompt, answer));
    const bool complete = !r.tokens.empty() && tokenizer.is_end_of_generation(r.tokens.back());
    if (complete) r.tokens.pop_back();
    e.answers.push_back(tokenizer.decode(r.tokens));
    e.answers_complete.push_back(complete);
  }
}

// Paths matching `pattern`, sorted; none when nothing matches.
std::vector<std::string> glob_paths(const std::string& pattern) {
  std::vector<std::string> paths;
  glob_t g{};
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0) paths.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  globfree(&g);
  return paths;
}

void print_table(const std::vector<Entry>& entries) {
  size_t wn = 5, wr = 4, wp = 5;
  for (const Entry& e : entries) {
    wn = std::max(wn, e.name.size());
    wr = std::max(wr, e.role.size());
    wp = std::max(wp, e.pairs.size());
  }
  const int n = static_cast<int>(wn), r = static_cast<int>(wr), p = static_cast<int>(wp);
  std::printf("%-*s  %-*s  %-*s  %5s  %13s  %12s  %10s\n", n, "model", r, "role", p, "pairs", "depth", "prefill tok/s",
              "decode tok/s", "perplexity");
  for (const Entry& e : entries) {
    std::printf("%-*s  %-*s  %-*s  %5d  %13.1f  %12.1f  %10.2f\n", n, e.name.c_str(), r, e.role.c_str(), p,
                e.pairs.c_str(), e.depth, e.prefill_tps, e.decode_tps, e.ppl);
  }
}

void run(const DemoOptions& o) {
  if (o.max_new_tokens < 1) fail(str_cat("-n must be at least 1 (got ", o.max_new_tokens, ")"));
  set_threads(o.threads);
  // Every plan file is read before the model loads and checked against it before anything runs.
  struct PlanColumn {
    std::string path, role;
    LpPlan plan;
  };
  std::vector<PlanColumn> columns;
  for (const std::string& path : o.plans) {
    if (!path.empty()) columns.push_back({path, "recommended", value_or_fail(read_lp_plan_file(path))});
  }
  if (!o.aggressive.empty()) {
    columns.push_back({o.aggressive, "aggressive", value_or_fail(read_lp_plan_file(o.aggressive))});
  }

  LoadedModel base = value_or_fail(load_model(o.model, {}));
  for (const PlanColumn& c : columns) {
    const Status valid = validate_lp_plan(c.plan, base.original_depth);
    if (!valid.ok()) fail(str_cat(c.path, ": ", valid.message(), " (--plans and --aggressive choose the plan files)"));
  }
  // LP keeps the context and the tokenizer, so the baseline's inputs serve every plan.
  const DemoInputs inputs = value_or_fail(demo_inputs(base.tokenizer, base.weights.config, o));
  std::fprintf(stderr, "demo: loaded %s (%d layers, %.1f M parameters)\n", base.path.c_str(), base.original_depth,
               base.original_parameters / 1e6);
  std::vector<Entry> entries;
  entries.emplace_back("baseline", "-", "none");
  measure(entries.back(), base.weights, base.tokenizer, inputs, o);
  for (const PlanColumn& c : columns) {
    entries.emplace_back("LP " + stem(c.path), c.role, c.plan.describe());
    measure(entries.back(), value_or_fail(apply_lp_plan(base.weights, c.plan)), base.tokenizer, inputs, o);
  }

  // Healed models carry their own weights and depth; one that does not load is reported and left out.
  std::vector<std::string> skipped;
  for (const std::string& path : o.healed.empty() ? std::vector<std::string>{} : glob_paths(o.healed)) {
    Result<LoadedModel> healed = load_model(path, {});
    Result<DemoInputs> healed_inputs =
        healed.ok() ? demo_inputs(healed.value().tokenizer, healed.value().weights.config, o) : healed.error();
    if (!healed_inputs.ok()) {
      skipped.push_back(str_cat(path, ": ", healed_inputs.message()));
      std::fprintf(stderr, "demo: skipped healed model %s\n", skipped.back().c_str());
      continue;
    }
    entries.emplace_back(stem(path), "healed", "built-in");
    measure(entries.back(), healed.value().weights, healed.value().tokenizer, healed_inputs.value(), o);
  }

  std::printf("\nduet demo: %s on %s", base.path.c_str(), o.device.c_str());
  if (o.device == "cpu") {
    const int threads = omp_get_max_threads();
    std::printf(", %d thread%s, %s arithmetic", threads, threads == 1 ? "" : "s", o.cpu_math.c_str());
  }
  std::printf("\n\n");
  print_table(entries);
  std::printf(
      "\nrecommended: the plans that lose least accuracy on the full dev sets (docs/RESULTS.md); aggressive: a deep\n"
      "cut, shown for what it costs. Perplexity: the built-in text. Speed: prefill of that text, then %d decode\n"
      "steps. On a CPU, decode streams the same weight bytes with or without LP, so LP barely changes its speed;\n"
      "GPU speed-ups: bench/RESULTS.md.\n",
      kSpeedDecodeSteps);
  for (const std::string& s : skipped) std::printf("skipped healed model %s\n", s.c_str());
  for (size_t p = 0; p < std::size(kDemoPrompts); ++p) {
    std::printf("\nprompt %zu: %s\n", p + 1, kDemoPrompts[p]);
    for (const Entry& e : entries) {
      std::printf("\n[%s, %s, depth %d]%s\n%s\n", e.name.c_str(), e.role.c_str(), e.depth,
                  e.answers_complete[p] ? "" : " (cut at -n tokens)", e.answers[p].c_str());
    }
  }
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "the model next to the recommended LP plans, an aggressive plan and healed models found locally: "
              "depth, speed, perplexity on a built-in text, greedy answers to two chat prompts");
  cmd->add_option("-m,--model", options->model, "GGUF file or HF safetensors directory")->capture_default_str();
  cmd->add_option("--device", options->device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)");
  cmd->add_option("--cpu-math", options->cpu_math,
                  "CPU products with quantized weights: int8 (as llama.cpp) or float32 (the exact reference)")
      ->check(CLI::IsMember({"int8", "float32"}))
      ->capture_default_str();
  cmd->add_option("--plans", options->plans, "recommended LP plan files, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--aggressive", options->aggressive, "an LP plan file shown as the aggressive cut ('' for none)")
      ->capture_default_str();
  cmd->add_option("--healed", options->healed, "glob of healed GGUF models to show when present ('' for none)")
      ->capture_default_str();
  cmd->add_option("-n,--max-tokens", options->max_new_tokens, "most tokens of each answer")->capture_default_str();
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
