// Named shapes of real Llama-family models for `duet bench` (config is data).
// Speed depends on shapes only, so the bench fills these with random weights.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "model/config.h"

namespace duet {

struct BenchShape {
  std::string name;
  ModelConfig config;
  std::vector<std::string> lp_plans;  // default LP plans to compare against the baseline
};

const std::vector<BenchShape>& bench_shapes();
Result<BenchShape> find_bench_shape(const std::string& name);
std::string bench_shape_names();  // "llama2-7b, llama3-8b, ..."

}  // namespace duet
