// duet bench: for each model shape and LP plan, ms per decode step over a sweep
// of batch sizes at a fixed context, tokens/s, prefill tokens/s and TFLOP/s,
// the bytes a step must move and the achieved fraction of the copy bandwidth
// measured in the same run, and each LP plan's speedup over the baseline
// measured in the same run. Random weights of named real shapes (speed depends
// on shapes only) or a model file. Progress on stderr, table on stdout, JSON
// with --json.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/bench_tp.h"
#include "cli/commands_bench.h"
#include "cli/common.h"

#ifdef DUET_HAVE_CUDA
#include <nlohmann/json.hpp>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "backends/cuda/cuda_model.h"
#include "model/loader.h"
#include "model/lp_merge.h"
#include "model/lp_plan.h"
#include "runtime/bench_shapes.h"
#endif

namespace duet::cli {

#ifndef DUET_HAVE_CUDA

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "GPU decode/prefill benchmark (needs a CUDA build)");
  cmd->allow_extras();
  cmd->callback([] {
    std::fprintf(stderr, "duet: error: duet was built without CUDA\n");
    throw CLI::RuntimeError(1);
  });
}

#else

namespace {

struct BenchOptions : LpOptions {
  std::string shapes = "llama2-7b,smollm2-135m";
  std::string model;
  std::string batches = "1,16,64";
  std::string contexts = "1024";
  int prefill = 2048;
  int steps = 50;
  bool baseline_only = false;
  bool prefill_breakdown = false;
  std::string json_path;
  uint64_t seed = 1;
  int tp = 1;               // tensor-parallel ranks (cli/bench_tp.h)
  double allreduce_us = 0;  // --tp estimate on one GPU: assumed all-reduce latency
  std::string allreduce = "nccl";  // --tp measured: nccl or p2p
};

struct Row {
  std::string shape, plan;
  int depth = 0, batch = 0, ctx = 0;
  double ms = 0, tok_s = 0, bytes = 0, bw_frac = 0, speedup = 0;
  double prefill_tokens = 0, prefill_ms = 0, prefill_tok_s = 0, prefill_tflops = 0;
};


std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// A model under one plan: random weights of a named shape, or a file with the plan merged.
struct ModelSource {
  std::string name;
  ModelConfig config;
  std::vector<std::string> default_plans;
  std::shared_ptr<ModelWeights> weights;  // null for random shapes

  Result<std::unique_ptr<CudaModel>> build(const LpPlan& plan, const CudaModelOptions& options, uint64_t seed) const {
    if (!weights) return CudaModel::create_random(config, plan, options, seed);
    DUET_ASSIGN_OR_RETURN(ModelWeights merged, apply_lp_plan(*weights, plan));
    return CudaModel::create(merged, options);
  }
};

// A comma-separated list of positive integers given to `flag`, e.g. "1,16,64".
std::vector<int> parse_positive_list(const std::string& text, const std::string& flag, const std::string& example) {
  std::vector<int> values;
  for (const std::string& item : split_list(text)) {
    size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || value < 1) {
      fail("bad " + flag + " entry '" + item + "' (expected positive integers, like " + example + ")");
    }
    values.push_back(value);
  }
  if (values.empty()) fail(flag + " is empty");
  return values;
}

void run_bench(const BenchOptions& o) {
  const std::vector<int> batches = parse_positive_list(o.batches, "--batch", "1,16,64");
  const std::vector<int> contexts = parse_positive_list(o.contexts, "--ctx", "512,1024,4096");
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  if (o.tp < 1) fail(str_cat("--tp must be at least 1 (got ", o.tp, ")"));
  if (o.tp != 1 && !o.model.empty()) fail("duet bench --tp runs random-weight shapes (--shape); drop -m");

  std::vector<ModelSource> sources;
  if (!o.model.empty()) {
    ModelSource s;
    s.name = o.model;
    s.weights = std::make_shared<ModelWeights>(value_or_fail(load_weights(o.model)));
    s.config = s.weights->config;
    sources.push_back(s);
  } else {
    for (const std::string& name : split_list(o.shapes)) {
      const BenchShape shape = value_or_fail(find_bench_shape(name));
      sources.push_back({shape.name, shape.config, shape.lp_plans, nullptr});
    }
  }
  const LpPlan custom_plan = value_or_fail(o.plan());  // replaces each shape's default plans when given
  // Each decode model's cache holds ctx + kCacheSlack positions (it never fills during the timed steps).
  constexpr int kCacheSlack = 8;
  for (const ModelSource& src : sources) {
    for (int ctx : contexts) {
      if (ctx + kCacheSlack > src.config.max_context) {
        fail(str_cat("--ctx ", ctx, " is too long for ", src.name, ": at most ", src.config.max_context - kCacheSlack,
                     " (its context of ", src.config.max_context, ", less ", kCacheSlack, " positions of slack)"));
      }
    }
  }

  // The baseline, then the custom plan or the shape's default plans.
  auto plans_of = [&](const ModelSource& src) {
    std::vector<std::pair<std::string, LpPlan>> plans = {{"none", LpPlan{}}};
    if (o.baseline_only) return plans;
    if (!custom_plan.empty()) {
      check_or_fail(validate_lp_plan(custom_plan, src.config.n_layers));
      plans.push_back({custom_plan.describe(), custom_plan});
    }
    for (const std::string& spec : custom_plan.empty() ? src.default_plans : std::vector<std::string>{}) {
      const LpPlan plan = value_or_fail(parse_lp_plan_text(spec));
      check_or_fail(validate_lp_plan(plan, src.config.n_layers));
      plans.push_back({spec, plan});
    }
    return plans;
  };
  if (o.tp != 1) {
    std::vector<TpBenchShape> shapes;
    for (const ModelSource& src : sources) shapes.push_back({src.name, src.config, plans_of(src)});
    run_tp_bench(shapes,
                 {o.tp, batches, contexts, o.prefill, o.steps, o.allreduce_us, o.seed, o.json_path, o.allreduce == "p2p"});
    return;
  }

  const std::string device = cuda_device_name();
  std::fprintf(stderr, "duet bench on %s: measuring copy bandwidth (2 GiB device-to-device)...\n", device.c_str());
  const double bw = value_or_fail(measure_copy_bandwidth(int64_t{1} << 31));
  std::fprintf(stderr, "copy bandwidth: %.0f GB/s (bytes read + written)\n", bw / 1e9);

  std::vector<Row> rows;
  for (const ModelSource& src : sources) {
    const std::vector<std::pair<std::string, LpPlan>> plans = plans_of(src);
    // Prompts run near the GPU's power cap, so its clock drifts over a run. Every plan's prompt model is built
    // first and the prompts are timed interleaved, one per plan per round, the order reversed every other
    // round; each plan's time is the median over the rounds, so the drift weighs every plan alike. Timed once
    // each, plan after plan, LP prompts read 2-3% on either side of their baseline (bench/RESULTS.md at 7611f28,
    // fifteenth pass).
    std::map<std::string, double> prefill_ms_of, prefill_tflops_of;
    if (o.prefill > 0) {
      std::vector<std::unique_ptr<CudaModel>> prompt_models;
      for (const auto& [plan_name, plan] : plans) {
        CudaModelOptions po;
        po.max_batch = 1;
        po.max_context = o.prefill;
        po.max_prefill = o.prefill;
        std::fprintf(stderr, "  %s lp=%s: building the %d-token prompt model...\n", src.name.c_str(),
                     plan_name.c_str(), o.prefill);
        prompt_models.push_back(value_or_fail(src.build(plan, po, o.seed)));
      }
      constexpr int kWarmupRounds = 2, kRounds = 10;
      std::fprintf(stderr, "  %s: timing prompts, %d rounds over %zu plans...\n", src.name.c_str(), kRounds,
                   plans.size());
      std::vector<std::vector<double>> times(plans.size());
      for (int round = 0; round < kWarmupRounds + kRounds; ++round) {
        for (size_t k = 0; k < plans.size(); ++k) {
          const size_t i = round % 2 ? plans.size() - 1 - k : k;
          const double ms = value_or_fail(prompt_models[i]->time_prefill(o.prefill, 0, 1));
          if (round >= kWarmupRounds) times[i].push_back(ms);
        }
      }
      for (size_t i = 0; i < plans.size(); ++i) {
        std::sort(times[i].begin(), times[i].end());
        const double ms = times[i][times[i].size() / 2];
        prefill_ms_of[plans[i].first] = ms;
        prefill_tflops_of[plans[i].first] = prompt_models[i]->prefill_flops(o.prefill) / (ms * 1e-3) / 1e12;
        if (o.prefill_breakdown) {
          std::fprintf(stderr, "  %s lp=%s: prefill stages\n", src.name.c_str(), plans[i].first.c_str());
          double total = 0;
          for (const auto& [stage, stage_ms] : value_or_fail(prompt_models[i]->prefill_breakdown(o.prefill))) {
            std::fprintf(stderr, "    prefill stage %-15s %8.3f ms\n", stage.c_str(), stage_ms);
            total += stage_ms;
          }
          std::fprintf(stderr, "    prefill stage %-15s %8.3f ms (plain timing %.3f ms)\n", "total", total, ms);
        }
      }
    }
    std::map<std::pair<int, int>, double> baseline_ms;  // (ctx, B) -> ms per step
    for (const auto& [plan_name, plan] : plans) {
      const double prefill_ms = prefill_ms_of[plan_name], prefill_tflops = prefill_tflops_of[plan_name];
      // One model per context: the decode attention's chunks are sized from the cache length, so a model
      // built for the longest context would split a short one into too few chunks.
      for (int ctx : contexts) {
        CudaModelOptions opt;
        opt.max_batch = max_batch;
        opt.max_context = ctx + kCacheSlack;
        opt.max_prefill = 64;
        auto model = value_or_fail(src.build(plan, opt, o.seed));
        const int depth = model->depth();
        for (int B : batches) {
          for (int b = 0; b < B; ++b) check_or_fail(model->set_length(b, ctx));
          const double ms = value_or_fail(model->time_decode(B, 5, o.steps));
          Row r;
          r.shape = src.name;
          r.plan = plan_name;
          r.depth = depth;
          r.batch = B;
          r.ctx = ctx;
          r.ms = ms;
          r.tok_s = B * 1e3 / ms;
          r.bytes = model->decode_step_bytes(B, ctx);
          r.bw_frac = r.bytes / (ms * 1e-3) / bw;
          if (plan.empty()) baseline_ms[{ctx, B}] = ms;
          r.speedup = baseline_ms.count({ctx, B}) ? baseline_ms[{ctx, B}] / ms : 0;
          r.prefill_tokens = o.prefill;
          r.prefill_ms = prefill_ms;
          r.prefill_tok_s = prefill_ms > 0 ? o.prefill * 1e3 / prefill_ms : 0;
          r.prefill_tflops = prefill_tflops;
          std::fprintf(stderr,
                       "  %-14s lp=%-8s L=%-3d ctx=%-5d B=%-3d %8.3f ms/step %9.1f tok/s %5.1f%% of copy BW  x%.3f\n",
                       r.shape.c_str(), r.plan.c_str(), r.depth, ctx, B, ms, r.tok_s, 100 * r.bw_frac, r.speedup);
          rows.push_back(r);
        }
      }
    }
  }

  std::printf("\nduet bench: %s, copy bandwidth %.0f GB/s, bf16, CUDA graphs\n", device.c_str(), bw / 1e9);
  std::printf("| shape | LP plan | L | ctx | B | ms/step | tok/s | GB/step | %% copy BW | LP speedup | prefill %d tok/s | "
              "prefill TFLOP/s |\n",
              o.prefill);
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %d | %d | %d | %.3f | %.1f | %.2f | %.1f | %.3f | %.0f | %.0f |\n", r.shape.c_str(),
                r.plan.c_str(), r.depth, r.ctx, r.batch, r.ms, r.tok_s, r.bytes / 1e9, 100 * r.bw_frac, r.speedup,
                r.prefill_tok_s, r.prefill_tflops);
  }
  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["device"] = device;
    j["copy_bandwidth_bytes_per_s"] = bw;
    j["contexts"] = contexts;
    j["prefill_tokens"] = o.prefill;
    for (const Row& r : rows) {
      j["results"].push_back({{"shape", r.shape}, {"lp_plan", r.plan}, {"depth", r.depth}, {"context", r.ctx},
                              {"batch", r.batch},
                              {"ms_per_step", r.ms}, {"tokens_per_s", r.tok_s}, {"bytes_per_step", r.bytes},
                              {"copy_bw_fraction", r.bw_frac}, {"lp_speedup", r.speedup},
                              {"prefill_ms", r.prefill_ms}, {"prefill_tokens_per_s", r.prefill_tok_s},
                              {"prefill_tflops", r.prefill_tflops}});
    }
    std::ofstream out(o.json_path);
    out << j.dump(2) << "\n";
    if (!out) fail("cannot write " + o.json_path);
    std::fprintf(stderr, "wrote %s\n", o.json_path.c_str());
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "GPU decode/prefill benchmark: baseline vs LP plans, same run");
  cmd->add_option("--shape", options->shapes, "named shapes, comma-separated: " + bench_shape_names())
      ->capture_default_str();
  cmd->add_option("-m,--model", options->model, "benchmark this model file instead of random-weight shapes");
  cmd->add_option("--batch", options->batches, "batch sizes to sweep, comma-separated")->capture_default_str();
  cmd->add_option("--ctx", options->contexts, "context lengths (cached positions) of the decode steps, comma-separated")
      ->capture_default_str();
  cmd->add_option("--prefill", options->prefill, "prompt length for the prefill measurement (0: skip)")
      ->capture_default_str();
  cmd->add_option("--steps", options->steps, "timed decode steps per configuration")->capture_default_str();
  options->add_to(*cmd);
  cmd->footer("An LP option replaces each shape's default plans; the baseline always runs in the same sweep.");
  cmd->add_flag("--baseline-only", options->baseline_only, "skip LP plans");
  cmd->add_flag("--prefill-breakdown", options->prefill_breakdown,
                "also time each prefill stage (summed over layers) with CUDA events, to stderr");
  cmd->add_option("--json", options->json_path, "write results as JSON");
  cmd->add_option("--seed", options->seed, "seed of the random weights")->capture_default_str();
  cmd->add_option("--tp", options->tp,
                  "tensor-parallel ranks: measured over N GPUs when visible, else estimated from one rank's shard")
      ->capture_default_str();
  cmd->add_option("--allreduce-us", options->allreduce_us,
                  "--tp estimate on a single GPU: the all-reduce latency to assume, in microseconds");
  cmd->add_option("--allreduce", options->allreduce,
                  "--tp over N GPUs: NCCL or the one-shot peer-to-peer kernel (src/parallel/p2p_all_reduce.h)")
      ->check(CLI::IsMember({"nccl", "p2p"}))
      ->capture_default_str();
  cmd->callback([options] { run_bench(*options); });
}

#endif

}  // namespace duet::cli
