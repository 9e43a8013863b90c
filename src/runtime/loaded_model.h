// LoadedModel: what every command needs from a checkpoint path and an LP plan:
// the (restructured) weights and the tokenizer.
#pragma once

#include <string>

#include "core/result.h"
#include "model/lp_plan.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace duet {

struct LoadedModel {
  std::string path;
  ModelWeights weights;  // after the LP plan
  LpPlan plan;
  int original_depth = 0;
  int64_t original_parameters = 0;
  Tokenizer tokenizer;
};

Result<Tokenizer> load_tokenizer(const std::string& path);

// Loads weights and tokenizer, validates the plan against the model and merges its pairs.
Result<LoadedModel> load_model(const std::string& path, const LpPlan& plan);

}  // namespace duet
