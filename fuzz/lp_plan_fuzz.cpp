// libFuzzer target for LP plans: plan files (parse_lp_plan_text) and the
// --lp / --lp-pairs flag values (parse_lp_range, parse_lp_pairs).
//
// An accepted plan is sorted with every layer index in 0..kMaxLayers (so no
// text can make a plan of a billion pairs); one that validate_lp_plan accepts
// for a 30-layer model has disjoint pairs inside the model; and the file text
// lp_plan_file_text writes reads back as the same plan.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_checks.h"
#include "model/config.h"
#include "model/lp_plan.h"

namespace {

void check_plan(const duet::Result<duet::LpPlan>& plan) {
  using namespace duet;
  if (!plan.ok()) {
    fuzz::check_error_line(plan.message(), "bad LP ");
    return;
  }
  const std::vector<int>& pairs = plan->pair_starts;
  DUET_CHECK(std::is_sorted(pairs.begin(), pairs.end()));
  for (int i : pairs) DUET_CHECK(i >= 0 && i <= kMaxLayers);

  constexpr int kLayers = 30;
  if (validate_lp_plan(*plan, kLayers).ok()) {
    for (size_t k = 0; k < pairs.size(); ++k) {
      DUET_CHECK(pairs[k] + 1 < kLayers);
      DUET_CHECK(k == 0 || pairs[k - 1] + 1 < pairs[k]);
    }
  }
  Result<LpPlan> again = parse_lp_plan_text(lp_plan_file_text(*plan, "fuzz\nround trip"));
  DUET_CHECK(again.ok() && again->pair_starts == pairs);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  const std::string text(reinterpret_cast<const char*>(data), size);
  check_plan(parse_lp_plan_text(text));
  check_plan(parse_lp_range(text));
  check_plan(parse_lp_pairs(text));
  return 0;
}
