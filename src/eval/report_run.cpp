#include "eval/report_run.h"

#include <algorithm>

#include "eval/perplexity.h"
#include "eval/scoring_task.h"
#include "model/lp_merge.h"

namespace duet {

Result<PlanRow> evaluate_plan_row(const ModelWeights& base, const Tokenizer& tokenizer, const LpPlan& plan,
                                  const std::string& kind, const DecoderFactory& factory, const RowSettings& settings,
                                  const std::function<void(const std::string&, int64_t, int64_t)>& on_progress) {
  DUET_ASSIGN_OR_RETURN(ModelWeights weights, apply_lp_plan(base, plan));
  PlanRow row;
  row.kind = kind;
  row.plan = plan;
  row.depth = weights.depth();
  const int capacity = std::max({settings.capacity, settings.ppl_context,
                                 settings.speed.prompt_tokens + settings.speed.decode_tokens});
  DUET_ASSIGN_OR_RETURN(auto decoder, factory(weights, capacity));

  DUET_ASSIGN_OR_RETURN(row.speed, measure_speed(*decoder, settings.ppl_tokens, settings.speed));
  for (const TaskData& task : settings.tasks) {
    ScoringOptions options;
    options.batch_size = settings.batch;
    options.on_progress = [&](int64_t done, int64_t total) { on_progress(task.spec->name, done, total); };
    DUET_ASSIGN_OR_RETURN(TaskEvaluation result, evaluate_task(*decoder, tokenizer, task, options));
    row.tasks.push_back(result.metrics);
  }
  PerplexityOptions ppl;
  ppl.context = settings.ppl_context;
  ppl.stride = settings.ppl_context / 2;
  ppl.on_progress = [&](int done, int total, double) { on_progress("ppl", done, total); };
  DUET_ASSIGN_OR_RETURN(PerplexityResult p, perplexity(*decoder, settings.ppl_tokens, ppl));
  row.ppl = p.ppl;
  return row;
}

}  // namespace duet
