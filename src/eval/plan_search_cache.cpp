#include "eval/plan_search_cache.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace duet {

Result<PlanScoreCache> PlanScoreCache::open(const std::string& log_path, const std::string& key) {
  PlanScoreCache cache;
  cache.log_path_ = log_path;
  cache.key_ = key;
  if (log_path.empty() || !std::filesystem::exists(log_path)) return cache;
  std::ifstream in(log_path);
  if (!in) return make_error("cannot read the search log '", log_path, "'");
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("key") || !j.contains("pairs") || !j.contains("score")) {
      // A line cut short by an interrupted run is expected at the end only.
      if (in.peek() == EOF) break;
      return make_error(log_path, ":", line_no, ": not a search log line");
    }
    if (j["key"] == key) cache.scores_[j["pairs"].get<std::vector<int>>()] = j["score"].get<double>();
  }
  return cache;
}

PlanScoreFn PlanScoreCache::wrap(PlanScoreFn inner) {
  return [this, inner = std::move(inner)](const LpPlan& plan) -> Result<double> {
    auto it = scores_.find(plan.pair_starts);
    if (it != scores_.end()) {
      ++hits_;
      return it->second;
    }
    ++misses_;
    DUET_ASSIGN_OR_RETURN(double score, inner(plan));
    scores_[plan.pair_starts] = score;
    if (!log_path_.empty()) {
      std::ofstream out(log_path_, std::ios::app);
      if (!out) return make_error("cannot append to the search log '", log_path_, "'");
      out << nlohmann::json{{"key", key_}, {"pairs", plan.pair_starts}, {"score", score}}.dump() << "\n";
    }
    return score;
  };
}

}  // namespace duet
