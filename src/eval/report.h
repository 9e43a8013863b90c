// The LP speed/accuracy report: one row per plan (baseline, best contiguous
// range and best searched set for each pair count) with per-task accuracy,
// held-out perplexity and speed, rendered as a Markdown table and as a gnuplot
// PNG of accuracy and perplexity against speedup (the paper's Figure 1 shape).
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "eval/report_speed.h"
#include "eval/scoring_metrics.h"
#include "model/lp_plan.h"

namespace duet {

struct PlanRow {
  std::string kind;  // "baseline", "contiguous", "searched"
  LpPlan plan;
  int depth = 0;
  double search_score = 0;  // calibration objective (lower is better)
  std::vector<TaskMetrics> tasks;
  double ppl = 0;  // held-out perplexity
  SpeedResult speed;
};

// The task's headline accuracy: acc_norm where the harness reports it, else acc.
double headline_accuracy(const TaskMetrics& task);
// Mean headline accuracy over the row's tasks, in points (0..100).
double average_accuracy_points(const PlanRow& row);

struct ReportText {
  std::string title;          // "SmolLM2-135M-Instruct.Q4_1 on cpu"
  std::string objective;      // "kl on 8 x 128 tokens of ..."
  std::string ppl_source;     // what the perplexity column measures
  std::string command;        // the command that produced the report
};

// rows[0] is the baseline; speedups are relative to it.
std::string report_markdown(const std::vector<PlanRow>& rows, const ReportText& text);
// Whitespace-separated columns for gnuplot: kind pairs speedup avg_acc ppl.
std::string report_plot_data(const std::vector<PlanRow>& rows);
// A gnuplot script that draws `data_path` into `png_path` (pngcairo, else png).
std::string report_gnuplot_script(const std::string& data_path, const std::string& png_path, const std::string& title);
// Runs `gnuplot script_path`; an error when gnuplot is missing or fails.
Status run_gnuplot(const std::string& script_path);

}  // namespace duet
