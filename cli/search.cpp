// duet search: find the LP plan that loses least on calibration text
// (eval/plan_search_run.h): the paper's contiguous-range sweep and a
// greedy/beam search over non-contiguous pairs, scored by KL to the baseline's
// next-token distribution or by calibration perplexity. Writes plan files for
// --lp-plan; the last stdout line is JSON.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "eval/plan_search_run.h"

namespace duet::cli {
namespace {

struct SearchOptions {
  ModelOptions model;
  SearchSettings settings;
  std::string objective = "kl";
  int pairs = 0;
  int depth = 0;
  std::string out, out_contiguous;
};

Status write_plan(const std::string& path, const ScoredPlan& plan, const std::string& comment) {
  std::ofstream out(path);
  if (!out) return make_error("cannot write the plan file '", path, "'");
  out << lp_plan_file_text(plan.plan, comment);
  return ok_status();
}

nlohmann::ordered_json plan_json(const ScoredPlan& p) {
  return {{"pairs", p.plan.describe()}, {"score", p.score}};
}

void run(SearchOptions& o) {
  if (!o.model.lp_range.empty() || !o.model.lp_pairs.empty() || !o.model.lp_plan_file.empty()) {
    fail("duet search starts from the baseline model; drop --lp/--lp-pairs/--lp-plan");
  }
  o.settings.objective = value_or_fail(parse_search_objective(o.objective));
  LoadedModel m = value_or_fail(load(o.model));
  const int L = m.weights.depth();
  const int pairs = o.depth > 0 ? L - o.depth : o.pairs;
  if (pairs < 1 || 2 * pairs > L) fail(str_cat("need 1..", L / 2, " pairs for a model of ", L, " layers, got ", pairs));

  const std::string device = o.model.device;
  const DecoderFactory factory = [&device](const ModelWeights& w, int capacity) {
    return make_decoder(w, device, capacity);
  };
  const auto progress = [](const std::string& line) { std::fprintf(stderr, "search: %s\n", line.c_str()); };
  const SearchOutcome r =
      value_or_fail(run_plan_search(m.weights, m.tokenizer, m.path, o.settings, {pairs}, factory, progress));

  const std::string what = str_cat(search_objective_name(o.settings.objective), " on ", o.settings.windows, " x ",
                                   o.settings.window, " tokens of ", o.settings.calibration_file);
  std::printf("model %s, %d layers, %d pairs (depth %d), objective %s\n", m.path.c_str(), L, pairs, L - pairs,
              what.c_str());
  std::printf("baseline score %.6f; best contiguous [%s] %.6f; best searched (beam %d) [%s] %.6f\n", r.baseline_score,
              r.contiguous[0].plan.describe().c_str(), r.contiguous[0].score, o.settings.beam_width,
              r.searched[0].plan.describe().c_str(), r.searched[0].score);
  if (!o.out.empty()) {
    check_or_fail(write_plan(o.out, r.searched[0],
                             str_cat("duet search: ", pairs, " pairs of ", m.path, ", beam ", o.settings.beam_width,
                                     "\n", what, ": score ", r.searched[0].score)));
  }
  if (!o.out_contiguous.empty()) {
    check_or_fail(write_plan(o.out_contiguous, r.contiguous[0],
                             str_cat("duet search: best contiguous range of ", pairs, " pairs of ", m.path, "\n", what,
                                     ": score ", r.contiguous[0].score)));
  }
  nlohmann::ordered_json j = {{"objective", search_objective_name(o.settings.objective)},
                              {"pairs", pairs},
                              {"baseline", r.baseline_score},
                              {"contiguous", plan_json(r.contiguous[0])},
                              {"searched", plan_json(r.searched[0])},
                              {"plans_scored", r.plans_scored},
                              {"plans_cached", r.plans_cached}};
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void add_search_command(CLI::App& app) {
  auto o = std::make_shared<SearchOptions>();
  o->settings.calibration_file = "../shared/data/wikitext2/valid.txt";
  CLI::App* cmd = app.add_subcommand("search", "find the LP plan that loses least on calibration text");
  o->model.add_to(*cmd, /*with_ctx=*/false);
  auto* pairs = cmd->add_option("--pairs", o->pairs, "number of LP pairs to place");
  auto* depth = cmd->add_option("--depth", o->depth, "target effective depth (layers - pairs)");
  pairs->excludes(depth);
  cmd->add_option("--calib", o->settings.calibration_file, "calibration text (its first half is used)")
      ->capture_default_str();
  cmd->add_option("--window", o->settings.window, "tokens per calibration window")->capture_default_str();
  cmd->add_option("--windows", o->settings.windows, "calibration windows")->capture_default_str();
  cmd->add_option("--objective", o->objective, "kl (to the baseline's next-token distribution) or ppl")
      ->capture_default_str();
  cmd->add_option("--top-k", o->settings.top_k, "baseline probabilities kept per position for kl (0: all)")
      ->capture_default_str();
  cmd->add_option("--beam", o->settings.beam_width, "beam width of the non-contiguous search (1: greedy)")
      ->capture_default_str();
  cmd->add_option("--log", o->settings.log_path, "JSONL score log; a rerun with the same log resumes");
  cmd->add_option("-o,--out", o->out, "plan file for the best searched (non-contiguous) plan");
  cmd->add_option("--out-contiguous", o->out_contiguous, "plan file for the best contiguous range");
  cmd->callback([o] {
    if (o->pairs == 0 && o->depth == 0) fail("give --pairs N or --depth D");
    run(*o);
  });
}

}  // namespace duet::cli
