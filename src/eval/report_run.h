// One report row end to end: merge the plan into a copy of the base weights,
// then measure speed, task accuracy and held-out perplexity on a fresh decoder.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "eval/plan_search_objective.h"
#include "eval/report.h"
#include "eval/scoring.h"
#include "eval/tasks.h"
#include "tokenizer/tokenizer.h"

namespace duet {

struct RowSettings {
  std::vector<TaskData> tasks;
  std::vector<int32_t> ppl_tokens;  // held-out text
  int ppl_context = 512;
  SpeedSettings speed;
  int capacity = 2048;  // decoder positions for the tasks
  int batch = 32;
};

// `on_progress(label, done, total)` reports token progress of each phase.
Result<PlanRow> evaluate_plan_row(const ModelWeights& base, const Tokenizer& tokenizer, const LpPlan& plan,
                                  const std::string& kind, const DecoderFactory& factory, const RowSettings& settings,
                                  const std::function<void(const std::string&, int64_t, int64_t)>& on_progress);

}  // namespace duet
