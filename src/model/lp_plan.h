// LpPlan: which pairs of consecutive layers run in parallel (Layer Parallelism).
//
// A pair is named by its first layer i and covers (i, i+1). Plans come from:
//   --lp A:B        pairs (A,A+1), (A+2,A+3), ..., (B-2,B-1); B exclusive, B-A even
//   --lp-pairs 4,8  pairs (4,5) and (8,9)
//   --lp-plan FILE  either form, one per line or comma-separated; '#' starts a comment
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace duet {

struct LpPlan {
  std::vector<int> pair_starts;  // sorted ascending, each pair (i, i+1)

  bool empty() const { return pair_starts.empty(); }
  int pair_count() const { return static_cast<int>(pair_starts.size()); }
  int effective_depth(int n_layers) const { return n_layers - pair_count(); }
  // "none", or the pairs' first layers: "10,12,14".
  std::string describe() const;
};

Result<LpPlan> parse_lp_range(const std::string& text);
Result<LpPlan> parse_lp_pairs(const std::string& text);
// Accepts a range "A:B" or a pair list; several lines are joined.
Result<LpPlan> parse_lp_plan_text(const std::string& text);
Result<LpPlan> read_lp_plan_file(const std::string& path);
// The plan as a file that read_lp_plan_file reads back.
std::string lp_plan_file_text(const LpPlan& plan, const std::string& comment);

// Errors for overlapping pairs, layers out of range or a pair crossing the last layer.
Status validate_lp_plan(const LpPlan& plan, int n_layers);

}  // namespace duet
