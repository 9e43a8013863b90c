// Task metrics from per-request log-likelihoods, as lm-evaluation-harness
// aggregates them:
//   acc       = mean over items of [argmax_i loglik_i == label]
//   acc_norm  = same with loglik_i / chars(choice_i), chars not counting the one
//               leading space (Unicode code points, as Python's len counts)
//   stderr    = sample stddev / sqrt(n) = sqrt(acc (1 - acc) / (n - 1))
//   lambada   acc = all target tokens greedy; ppl = exp(-mean_items loglik)
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eval/scoring.h"
#include "eval/tasks.h"

namespace duet {

struct ItemOutcome {
  int prediction = 0;       // argmax of loglik (kLastWord: 0)
  int prediction_norm = 0;  // argmax of the length-normalised loglik
  bool correct = false;
  bool correct_norm = false;
};

struct TaskMetrics {
  std::string task;
  int n = 0;
  double acc = 0, acc_stderr = 0;
  std::optional<double> acc_norm, acc_norm_stderr;  // tasks the harness normalises
  std::optional<double> ppl;                        // kLastWord tasks
};

// Code points of a UTF-8 string (continuation bytes are not counted).
size_t utf8_length(std::string_view text);
// The first index of the largest value (numpy argmax on ties).
int first_argmax(const std::vector<double>& values);
// sqrt(p (1 - p) / (n - 1)); 0 when n < 2.
double binary_mean_stderr(double p, int n);

// `scores` are the item's request scores, in request order.
ItemOutcome item_outcome(const TaskSpec& spec, const TaskItem& item, const std::vector<RequestScore>& scores);
TaskMetrics task_metrics(const TaskData& data, const std::vector<std::vector<RequestScore>>& scores);

// {"task": ..., "n": ..., "acc": ..., "acc_norm": ... or null, "stderr": ..., ...}
std::string task_metrics_json(const TaskMetrics& metrics);

}  // namespace duet
