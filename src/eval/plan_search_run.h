// The search as `duet search` and `duet report` run it: calibration text ->
// windows -> objective (with its resumable score cache) -> the best
// contiguous range and the best searched pair set for each pair count.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eval/plan_search.h"
#include "eval/plan_search_cache.h"
#include "eval/plan_search_objective.h"
#include "tokenizer/tokenizer.h"

namespace duet {

struct SearchSettings {
  std::string calibration_file;
  int window = 128;       // tokens per calibration window
  int windows = 8;        // windows, spread over the calibration part of the text
  SearchObjective objective = SearchObjective::kKl;
  int top_k = 64;         // baseline distribution kept per position (kKl)
  int beam_width = 1;     // 1 = greedy
  std::string log_path;   // resumable score log ("" = none)
};

// Calibration windows come from the first half of the text's tokens; the
// second half is left for held-out perplexity (calibration_heldout_tokens).
inline constexpr double kCalibrationFraction = 0.5;

struct SearchOutcome {
  double baseline_score = 0;               // the empty plan (0 for kKl)
  std::vector<ScoredPlan> contiguous;      // best contiguous range per requested pair count
  std::vector<ScoredPlan> searched;        // best beam-search set per requested pair count
  int plans_scored = 0, plans_cached = 0;
};

// Tokens of the calibration text after the calibration part (for held-out perplexity).
std::vector<int32_t> calibration_heldout_tokens(const std::vector<int32_t>& tokens);

// Runs the contiguous sweep for each count in `pair_counts` and one beam search
// up to the largest. `on_scored(plan, score)` reports every plan scored or recalled.
Result<SearchOutcome> run_plan_search(const ModelWeights& base, const Tokenizer& tokenizer,
                                      const std::string& model_key, const SearchSettings& settings,
                                      const std::vector<int>& pair_counts, const DecoderFactory& factory,
                                      const std::function<void(const std::string&)>& on_progress);

}  // namespace duet
