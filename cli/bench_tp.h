// duet bench --tp N (cli/bench_tp.cpp): tensor-parallel decode and prefill of
// random-weight shapes, baseline and LP plans in the same run. Measured over N
// GPUs when N are visible; otherwise an estimate from one rank's shard timed on
// GPU 0 plus the all-reduces a step makes (docs/tensor_parallel.md).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/lp_plan.h"

namespace duet::cli {

struct TpBenchShape {
  std::string name;
  ModelConfig config;
  std::vector<std::pair<std::string, LpPlan>> plans;  // the baseline ("none") first
};

struct TpBenchOptions {
  int tp = 2;
  std::vector<int> batches;
  std::vector<int> contexts;
  int prefill = 0;       // prompt tokens (0: no prefill)
  int steps = 50;
  double allreduce_us = 0;  // estimate mode on one GPU: the assumed all-reduce latency (> 0)
  uint64_t seed = 1;
  std::string json_path;
  bool p2p = false;  // measured mode: the one-shot P2P all-reduce instead of NCCL
};

// Prints the table to stdout (JSON to json_path); fails the command on error.
void run_tp_bench(const std::vector<TpBenchShape>& shapes, const TpBenchOptions& options);

}  // namespace duet::cli
