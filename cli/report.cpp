// duet report: the LP speed/accuracy trade-off of one model. Searches plans
// for each pair count (eval/plan_search_run.h), evaluates the baseline and
// every plan (eval/report_run.h) and writes OUT/report.md, OUT/report.png
// (gnuplot), the plot's data and script, and each plan as a plan file.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "eval/plan_search_run.h"
#include "eval/report_progress.h"
#include "eval/report_run.h"
#include "io/text_file.h"

namespace duet::cli {
namespace {

struct ReportOptions {
  ModelOptions model;
  SearchSettings search;
  std::string objective = "kl";
  std::vector<int> pairs = {2, 4, 6, 8, 10};
  std::vector<std::string> tasks = default_task_names();
  std::string data_dir = "../shared/data";
  int limit = 200;
  int ppl_tokens = 16384;
  int ppl_context = 512;
  SpeedSettings speed;
  std::string out_dir = "report";
};

Status write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  if (!out || !(out << text)) return make_error("cannot write '", path, "'");
  return ok_status();
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += s.empty() ? std::to_string(x) : "," + std::to_string(x);
  return s;
}

void run(ReportOptions& o) {
  o.search.objective = value_or_fail(parse_search_objective(o.objective));
  RowSettings rows_settings;
  rows_settings.speed = o.speed;
  rows_settings.ppl_context = o.ppl_context;
  for (const std::string& name : o.tasks) {
    const TaskSpec* spec = value_or_fail(find_task_spec(name));
    rows_settings.tasks.push_back(value_or_fail(load_task(*spec, o.data_dir + "/" + spec->data_file, o.limit)));
  }
  std::filesystem::create_directories(o.out_dir + "/plans");

  LoadedModel m = value_or_fail(load(o.model));
  const std::string device = o.model.device;
  const DecoderFactory factory = [&device](const ModelWeights& w, int capacity) {
    return make_decoder(w, device, capacity);
  };
  rows_settings.capacity = std::min(2048, m.weights.config.max_context);
  const std::string text = value_or_fail(read_text_file(o.search.calibration_file));
  rows_settings.ppl_tokens = calibration_heldout_tokens(
      m.tokenizer.encode(text, m.tokenizer.add_bos_default(), /*parse_special=*/false));
  if (static_cast<int>(rows_settings.ppl_tokens.size()) > o.ppl_tokens) rows_settings.ppl_tokens.resize(o.ppl_tokens);

  std::fprintf(stderr, "report: searching plans for pair counts %s\n", join(o.pairs).c_str());
  const SearchOutcome search = value_or_fail(run_plan_search(
      m.weights, m.tokenizer, m.path, o.search, o.pairs, factory,
      [](const std::string& line) { std::fprintf(stderr, "search: %s\n", line.c_str()); }));

  struct Pending {
    std::string kind;
    ScoredPlan plan;
  };
  std::vector<Pending> pending = {{"baseline", {LpPlan{}, search.baseline_score}}};
  for (size_t i = 0; i < o.pairs.size(); ++i) {
    pending.push_back({"contiguous", search.contiguous[i]});
    pending.push_back({"searched", search.searched[i]});
  }
  std::vector<PlanRow> rows;
  for (const Pending& p : pending) {
    std::fprintf(stderr, "report: %s plan [%s]\n", p.kind.c_str(), p.plan.plan.describe().c_str());
    std::map<std::string, ProgressBar> bars;
    PlanRow row = value_or_fail(evaluate_plan_row(
        m.weights, m.tokenizer, p.plan.plan, p.kind, factory, rows_settings,
        [&bars](const std::string& label, int64_t done, int64_t total) {
          bars.try_emplace(label, "  " + label).first->second.update(done, total, label == "ppl" ? "win" : "tok");
        }));
    row.search_score = p.plan.score;
    nlohmann::ordered_json j = {{"kind", row.kind},        {"pairs", row.plan.describe()},
                                {"depth", row.depth},      {"avg_acc", average_accuracy_points(row)},
                                {"ppl", row.ppl},          {"prefill_tps", row.speed.prefill_tokens_per_s},
                                {"decode_tps", row.speed.decode_tokens_per_s}};
    for (const TaskMetrics& t : row.tasks) j[t.task] = headline_accuracy(t);
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    if (row.plan.pair_count() > 0) {
      check_or_fail(write_file(
          str_cat(o.out_dir, "/plans/", row.kind, "_", row.plan.pair_count(), ".txt"),
          lp_plan_file_text(row.plan, str_cat("duet report: ", row.kind, " plan, ", row.plan.pair_count(), " pairs of ",
                                              m.path, "\navg accuracy ", average_accuracy_points(row), ", ppl ", row.ppl))));
    }
    rows.push_back(std::move(row));
  }

  ReportText text_info;
  text_info.title = str_cat(std::filesystem::path(m.path).filename().string(), " on ", o.model.device);
  text_info.objective = str_cat(search_objective_name(o.search.objective), " on ", o.search.windows, " x ",
                                o.search.window, " tokens of the first half of ", o.search.calibration_file);
  text_info.ppl_source = str_cat("perplexity on ", rows_settings.ppl_tokens.size(), " held-out tokens (second half of ",
                                 o.search.calibration_file, "), window ", o.ppl_context, ", stride ", o.ppl_context / 2);
  text_info.command = str_cat("duet report -m ", m.path, " --device ", o.model.device, " --pairs ", join(o.pairs),
                              " --limit ", o.limit, " --objective ", o.objective, " --beam ", o.search.beam_width,
                              " --windows ", o.search.windows, " --window ", o.search.window, " --out ", o.out_dir);
  const std::string data_path = o.out_dir + "/plot.dat", script_path = o.out_dir + "/plot.gp";
  check_or_fail(write_file(o.out_dir + "/report.md", report_markdown(rows, text_info)));
  check_or_fail(write_file(data_path, report_plot_data(rows)));
  check_or_fail(write_file(script_path, report_gnuplot_script(data_path, o.out_dir + "/report.png", text_info.title)));
  check_or_fail(run_gnuplot(script_path));
  std::printf("wrote %s/report.md and %s/report.png\n", o.out_dir.c_str(), o.out_dir.c_str());
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto o = std::make_shared<ReportOptions>();
  o->search.calibration_file = "../shared/data/wikitext2/valid.txt";
  CLI::App* cmd = app.add_subcommand("report", "LP speed/accuracy report: Markdown table and PNG plot");
  o->model.add_to(*cmd, /*with_ctx=*/false);
  cmd->add_option("--pairs", o->pairs, "pair counts to sweep")->delimiter(',')->capture_default_str();
  cmd->add_option("--task", o->tasks, "tasks to evaluate")->delimiter(',')->capture_default_str();
  cmd->add_option("--data-dir", o->data_dir, "folder of the task data")->capture_default_str();
  cmd->add_option("--limit", o->limit, "items per task (0: all)")->capture_default_str();
  cmd->add_option("--calib", o->search.calibration_file, "calibration text: first half for search, second for PPL")
      ->capture_default_str();
  cmd->add_option("--window", o->search.window, "tokens per calibration window")->capture_default_str();
  cmd->add_option("--windows", o->search.windows, "calibration windows")->capture_default_str();
  cmd->add_option("--objective", o->objective, "search objective: kl or ppl")->capture_default_str();
  cmd->add_option("--top-k", o->search.top_k, "baseline probabilities kept per position for kl")->capture_default_str();
  cmd->add_option("--beam", o->search.beam_width, "beam width (1: greedy)")->capture_default_str();
  cmd->add_option("--log", o->search.log_path, "JSONL search score log (resumable)");
  cmd->add_option("--ppl-tokens", o->ppl_tokens, "held-out tokens for perplexity")->capture_default_str();
  cmd->add_option("--ppl-ctx", o->ppl_context, "perplexity window")->capture_default_str();
  cmd->add_option("--speed-prompt", o->speed.prompt_tokens, "prompt tokens for the prefill speed")->capture_default_str();
  cmd->add_option("--speed-decode", o->speed.decode_tokens, "decode steps for the decode speed")->capture_default_str();
  cmd->add_option("--speed-repeats", o->speed.repeats, "speed repeats (median reported)")->capture_default_str();
  cmd->add_option("--out", o->out_dir, "output folder")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace duet::cli
