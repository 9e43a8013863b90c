// PlanScoreCache: remembers every plan's score, in memory and optionally in a
// JSONL log, so a search never scores a plan twice and an interrupted
// `duet search` resumes where it stopped. Each log line carries a key naming
// the model, calibration and objective; lines of another key are ignored, so
// one log can serve several searches.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "eval/plan_search.h"

namespace duet {

class PlanScoreCache {
 public:
  // Reads `log_path` when it exists ("" keeps the cache in memory only).
  static Result<PlanScoreCache> open(const std::string& log_path, const std::string& key);

  // Scores through `inner` unless the plan is cached; appends new scores to the log.
  PlanScoreFn wrap(PlanScoreFn inner);
  int hits() const { return hits_; }
  int misses() const { return misses_; }

 private:
  std::string log_path_, key_;
  std::map<std::vector<int>, double> scores_;
  int hits_ = 0, misses_ = 0;
};

}  // namespace duet
