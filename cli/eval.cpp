// duet eval: zero-shot benchmark accuracy by log-likelihood, as
// lm-evaluation-harness scores it (eval/tasks.h, eval/scoring_metrics.h).
// Several tasks run in one call on one loaded model; the last stdout line of
// each task is its JSON result. See docs/eval.md.
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/tp_launch.h"
#include "eval/report_progress.h"
#include "eval/scoring_task.h"
#include "eval/tasks.h"

namespace duet::cli {
namespace {

struct EvalOptions {
  ModelOptions model;
  std::vector<std::string> tasks;
  std::vector<std::string> data;  // one file per task, or none: <data-dir>/<task>/dev.jsonl
  std::string data_dir = "../shared/data";
  int limit = 0;
  int batch = 32;
  std::string dump;
};

// "all" -> the default six; otherwise names as given (comma lists allowed by CLI11's delimiter).
std::vector<std::string> expand_tasks(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const std::string& name : names) {
    if (name == "all") {
      for (const std::string& d : default_task_names()) out.push_back(d);
    } else {
      out.push_back(name);
    }
  }
  return out;
}

void run(const EvalOptions& o) {
  const auto job = value_or_fail(TpJob::join(o.model));  // under mpirun: this process's rank
  if (job->follower()) return job->follow(o.model);
  const std::vector<std::string> names = expand_tasks(o.tasks);
  if (!o.data.empty() && o.data.size() != names.size()) {
    fail(str_cat("--data names ", o.data.size(), " files for ", names.size(), " tasks; give one per task or none"));
  }
  // Parse everything before loading the model, so a bad name or file fails fast.
  std::vector<TaskData> tasks;
  for (size_t i = 0; i < names.size(); ++i) {
    const TaskSpec* spec = value_or_fail(find_task_spec(names[i]));
    const std::string path = o.data.empty() ? o.data_dir + "/" + spec->data_file : o.data[i];
    tasks.push_back(value_or_fail(load_task(*spec, path, o.limit)));
  }
  std::ofstream dump;
  if (!o.dump.empty()) {
    dump.open(o.dump);
    if (!dump) fail(str_cat("cannot write the dump file '", o.dump, "'"));
  }

  LoadedModel m = value_or_fail(load(o.model));
  const int capacity = std::min(o.model.ctx > 0 ? o.model.ctx : 2048, m.weights.config.max_context);
  auto decoder = value_or_fail(job->make_decoder(m.weights, o.model, capacity));
  std::printf("model %s, LP pairs %s, depth %d, device %s\n", m.path.c_str(), m.plan.describe().c_str(),
              m.weights.depth(), decoder->device_name().c_str());
  std::fflush(stdout);
  for (const TaskData& task : tasks) {
    ProgressBar bar(task.spec->name);
    ScoringOptions options;
    options.batch_size = o.batch;
    options.on_progress = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
    const TaskEvaluation result = value_or_fail(evaluate_task(*decoder, m.tokenizer, task, options));
    for (const ItemRecord& item : result.items) dump << item_record_json(task.spec->name, item) << "\n";
    std::printf("%s\n", task_metrics_json(result.metrics).c_str());
    std::fflush(stdout);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "zero-shot benchmark accuracy (lm-evaluation-harness scoring); one JSON line per task");
  options->model.add_to(*cmd);
  options->model.add_tp_to(*cmd);
  options->model.add_cpu_math_to(*cmd);
  cmd->add_option("--task", options->tasks, "task names (repeat or comma-separate), or 'all' for the six LP tasks")
      ->required()
      ->delimiter(',');
  cmd->add_option("--data", options->data, "JSONL file per task, in --task order (default: DATA_DIR/<task>/dev.jsonl)")
      ->delimiter(',');
  cmd->add_option("--data-dir", options->data_dir, "folder of the task data")->capture_default_str();
  cmd->add_option("--limit", options->limit, "score only the first N items of each task");
  cmd->add_option("--batch", options->batch, "sequences per scoring batch")->capture_default_str();
  cmd->add_option("--dump", options->dump, "write per-item log-likelihoods as JSONL to this file");
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
