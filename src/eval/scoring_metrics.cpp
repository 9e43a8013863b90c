#include "eval/scoring_metrics.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace duet {

size_t utf8_length(std::string_view text) {
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

int first_argmax(const std::vector<double>& values) {
  int best = 0;
  for (size_t i = 1; i < values.size(); ++i) {
    if (values[i] > values[best]) best = static_cast<int>(i);
  }
  return best;
}

double binary_mean_stderr(double p, int n) { return n < 2 ? 0.0 : std::sqrt(p * (1 - p) / (n - 1)); }

ItemOutcome item_outcome(const TaskSpec& spec, const TaskItem& item, const std::vector<RequestScore>& scores) {
  ItemOutcome out;
  if (spec.kind == TaskKind::kLastWord) {
    out.correct = out.correct_norm = scores[0].greedy;
    return out;
  }
  std::vector<double> loglik, normalised;
  for (size_t i = 0; i < scores.size(); ++i) {
    const std::string_view choice = item.requests[i].continuation;
    const size_t chars = utf8_length(choice) - (choice.starts_with(' ') ? 1 : 0);
    loglik.push_back(scores[i].loglik);
    normalised.push_back(scores[i].loglik / static_cast<double>(std::max<size_t>(chars, 1)));
  }
  out.prediction = first_argmax(loglik);
  out.prediction_norm = first_argmax(normalised);
  out.correct = out.prediction == item.label;
  out.correct_norm = out.prediction_norm == item.label;
  return out;
}

TaskMetrics task_metrics(const TaskData& data, const std::vector<std::vector<RequestScore>>& scores) {
  TaskMetrics m;
  m.task = data.spec->name;
  m.n = static_cast<int>(data.items.size());
  double correct = 0, correct_norm = 0, loglik_sum = 0;
  for (size_t i = 0; i < data.items.size(); ++i) {
    const ItemOutcome o = item_outcome(*data.spec, data.items[i], scores[i]);
    correct += o.correct;
    correct_norm += o.correct_norm;
    loglik_sum += scores[i][0].loglik;
  }
  m.acc = correct / m.n;
  m.acc_stderr = binary_mean_stderr(m.acc, m.n);
  if (data.spec->has_acc_norm) {
    m.acc_norm = correct_norm / m.n;
    m.acc_norm_stderr = binary_mean_stderr(*m.acc_norm, m.n);
  }
  if (data.spec->kind == TaskKind::kLastWord) m.ppl = std::exp(-loglik_sum / m.n);
  return m;
}

std::string task_metrics_json(const TaskMetrics& m) {
  nlohmann::ordered_json j;
  j["task"] = m.task;
  j["n"] = m.n;
  j["acc"] = m.acc;
  j["acc_norm"] = m.acc_norm ? nlohmann::ordered_json(*m.acc_norm) : nlohmann::ordered_json(nullptr);
  j["stderr"] = m.acc_stderr;
  if (m.acc_norm_stderr) j["acc_norm_stderr"] = *m.acc_norm_stderr;
  if (m.ppl) j["ppl"] = *m.ppl;
  return j.dump();
}

}  // namespace duet
