#include "eval/plan_search_run.h"

#include <algorithm>

#include "io/text_file.h"

namespace duet {

std::vector<int32_t> calibration_heldout_tokens(const std::vector<int32_t>& tokens) {
  const size_t split = static_cast<size_t>(tokens.size() * kCalibrationFraction);
  return {tokens.begin() + split, tokens.end()};
}

Result<SearchOutcome> run_plan_search(const ModelWeights& base, const Tokenizer& tokenizer,
                                      const std::string& model_key, const SearchSettings& settings,
                                      const std::vector<int>& pair_counts, const DecoderFactory& factory,
                                      const std::function<void(const std::string&)>& on_progress) {
  if (pair_counts.empty()) return make_error("plan search needs at least one pair count");
  DUET_ASSIGN_OR_RETURN(std::string text, read_text_file(settings.calibration_file));
  std::vector<int32_t> tokens = tokenizer.encode(text, tokenizer.add_bos_default(), /*parse_special=*/false);
  tokens.resize(static_cast<size_t>(tokens.size() * kCalibrationFraction));
  DUET_ASSIGN_OR_RETURN(auto windows, calibration_windows(tokens, settings.window, settings.windows));
  DUET_ASSIGN_OR_RETURN(CalibrationObjective objective,
                        CalibrationObjective::create(base, std::move(windows), settings.objective, settings.top_k,
                                                     factory));
  const std::string key = str_cat(model_key, "|", settings.calibration_file, "|", search_objective_name(settings.objective),
                                  "|", settings.windows, "x", settings.window, "|k", settings.top_k);
  DUET_ASSIGN_OR_RETURN(PlanScoreCache cache, PlanScoreCache::open(settings.log_path, key));
  int scored = 0;
  const PlanScoreFn score = cache.wrap([&objective](const LpPlan& plan) { return objective.score(plan); });
  const PlanScoreFn reported = [&](const LpPlan& plan) -> Result<double> {
    DUET_ASSIGN_OR_RETURN(double s, score(plan));
    ++scored;
    if (on_progress) on_progress(str_cat("plan ", scored, " [", plan.describe(), "] ", search_objective_name(settings.objective), " score ", s));
    return s;
  };

  SearchOutcome out;
  DUET_ASSIGN_OR_RETURN(out.baseline_score, reported(LpPlan{}));
  for (int n : pair_counts) {
    DUET_ASSIGN_OR_RETURN(auto sweep, contiguous_sweep(reported, base.depth(), n));
    out.contiguous.push_back(best_plan(sweep));
  }
  const int max_pairs = *std::max_element(pair_counts.begin(), pair_counts.end());
  DUET_ASSIGN_OR_RETURN(auto grown, beam_search(reported, base.depth(), max_pairs, settings.beam_width));
  for (int n : pair_counts) out.searched.push_back(grown[n - 1]);
  out.plans_scored = cache.misses();
  out.plans_cached = cache.hits();
  return out;
}

}  // namespace duet
