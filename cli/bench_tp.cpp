// duet bench --tp N: see bench_tp.h. Two modes, chosen by the GPUs visible:
//   measured  (>= N GPUs): one thread per GPU in this process, each rank a
//     CudaModel of its shard's shape with an NCCL communicator on its stream,
//     so the decode graphs hold the all-reduces; rank 0's CUDA-event time is
//     the step. The same plan at --tp 1 on GPU 0 in the same run gives the
//     scaling.
//   estimate  (< N GPUs): the --tp 1 step and one rank's shard step (no
//     collectives) timed on GPU 0, and the predicted step
//         shard step + (all-reduces per step) x (one all-reduce's latency),
//     with the latency measured in a CUDA graph over the visible GPUs when
//     there are 2 or more (the faster of NCCL and the one-shot P2P kernel,
//     parallel/p2p_all_reduce.h), else taken from --allreduce-us (stated as
//     assumed).
// With 2+ GPUs a table of both all-reduces' latencies per message size comes first.
// A step of a model of depth L' (after LP) makes 2 L' all-reduces of B x D floats.
#include "cli/bench_tp.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "cli/common.h"

#ifdef DUET_HAVE_NCCL
#include <nlohmann/json.hpp>

#include "backends/cuda/cuda_model.h"
#include "model/tp_shard.h"
#include "parallel/nccl_communicator.h"
#include "parallel/p2p_all_reduce.h"
#endif

namespace duet::cli {

#ifndef DUET_HAVE_NCCL

void run_tp_bench(const std::vector<TpBenchShape>&, const TpBenchOptions& o) {
  fail(str_cat("duet bench --tp ", o.tp, " needs NCCL, and this build has none"));
}

#else

namespace {

constexpr int kCacheSlack = 8;  // as bench.cpp: the decode cache never fills during the timed steps

struct TpRow {
  std::string shape, plan;
  int depth = 0, batch = 0, ctx = 0, allreduces = 0;
  double tp1_ms = 0, tp_ms = 0, shard_ms = 0, allreduce_us = 0;
  double tp1_prefill_tok_s = 0, tp_prefill_tok_s = 0;
  double scaling = 0, lp_speedup = 0;
};

struct Timings {
  std::vector<double> decode_ms;  // per batch
  double prefill_ms = 0;          // 0 when not measured
};

CudaModelOptions decode_options(int max_batch, int ctx) {
  CudaModelOptions o;
  o.max_batch = max_batch;
  o.max_context = ctx + kCacheSlack;
  o.max_prefill = 64;
  return o;
}

CudaModelOptions prefill_options(int tokens) {
  CudaModelOptions o;
  o.max_batch = 1;
  o.max_context = tokens;
  o.max_prefill = tokens;
  return o;
}

// Makes a rank's communicator on a model's stream (null: the model runs alone).
using JoinFn = std::function<Result<std::unique_ptr<Communicator>>(void* stream)>;

// Decode (and prefill) times of one model of `config` under `plan` on the current GPU, joined through `join`
// when given. Every rank of a group makes the same calls in the same order, so their collectives pair up.
Result<Timings> time_model(const ModelConfig& config, const LpPlan& plan, const TpBenchOptions& o, int ctx,
                           uint64_t seed, const JoinFn& join) {
  Timings t;
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  {
    DUET_ASSIGN_OR_RETURN(auto model, CudaModel::create_random(config, plan, decode_options(max_batch, ctx), seed));
    std::unique_ptr<Communicator> comm;
    if (join) {
      DUET_ASSIGN_OR_RETURN(comm, join(model->stream()));
      DUET_TRY(model->set_communicator(comm.get()));
    }
    for (int B : o.batches) {
      for (int b = 0; b < B; ++b) DUET_TRY(model->set_length(b, ctx));
      DUET_ASSIGN_OR_RETURN(double ms, model->time_decode(B, 5, o.steps));
      t.decode_ms.push_back(ms);
    }
  }
  if (o.prefill > 0) {
    DUET_ASSIGN_OR_RETURN(auto model, CudaModel::create_random(config, plan, prefill_options(o.prefill), seed));
    std::unique_ptr<Communicator> comm;
    if (join) {
      DUET_ASSIGN_OR_RETURN(comm, join(model->stream()));
      DUET_TRY(model->set_communicator(comm.get()));
    }
    DUET_ASSIGN_OR_RETURN(t.prefill_ms, model->time_prefill(o.prefill, 1, 5));
  }
  return t;
}

// The sharded model on GPUs 0..tp-1, one thread each, its all-reduces by NCCL or the one-shot P2P kernel;
// rank 0's timings.
Result<Timings> time_tensor_parallel(const ModelConfig& shard, const LpPlan& plan, const TpBenchOptions& o, int ctx) {
  // The decode model and the prompt model each join their own group.
  const int groups = o.prefill > 0 ? 2 : 1;
  std::vector<NcclId> ids;
  std::vector<std::unique_ptr<P2pGroup>> p2p;
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  for (int g = 0; g < groups; ++g) {
    ids.push_back(value_or_fail(make_nccl_id()));
    const int64_t rows = g == 0 ? max_batch : o.prefill;
    p2p.push_back(std::make_unique<P2pGroup>(o.tp, rows * shard.dim));
  }
  std::vector<Timings> timings(o.tp);
  std::vector<Status> status(o.tp, ok_status());
  std::vector<std::thread> threads;
  for (int r = 0; r < o.tp; ++r) {
    threads.emplace_back([&, r] {
      status[r] = cuda_set_device(r);
      if (!status[r].ok()) return;
      size_t next = 0;
      const JoinFn join = [&](void* stream) -> Result<std::unique_ptr<Communicator>> {
        const size_t g = next++;
        if (o.p2p) return p2p.at(g)->join(r, stream);
        return make_nccl_communicator(ids.at(g), r, o.tp, r, stream);
      };
      Result<Timings> t = time_model(shard, plan, o, ctx, o.seed + r, join);
      if (t.ok()) timings[r] = std::move(t).value(); else status[r] = t.error();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const Status& s : status) DUET_TRY(s);
  return timings[0];
}

}  // namespace

void run_tp_bench(const std::vector<TpBenchShape>& shapes, const TpBenchOptions& o) {
  for (const TpBenchShape& s : shapes) value_or_fail(tp_shard_config(s.config, o.tp));  // before the GPU is touched
  const int visible = cuda_device_count();
  if (visible < 1) fail("duet bench --tp: no GPU visible");
  const bool measured = visible >= o.tp;
  if (!measured && visible < 2 && o.allreduce_us <= 0) {
    fail(str_cat("--tp ", o.tp, " with ", visible,
                 " GPU visible is an estimate and needs the all-reduce latency: give --allreduce-us"));
  }
  const std::string device = cuda_device_name();
  std::fprintf(stderr, "duet bench --tp %d on %d x %s: %s\n", o.tp, visible, device.c_str(),
               measured ? "measured over the GPUs" : "estimated from one rank's shard on GPU 0");

  // All-reduce latency per message size (B x D floats) for the estimate.
  // All-reduce latency by message size (floats), NCCL and P2P, over min(visible, tp) GPUs.
  const int latency_gpus = std::min(visible, o.tp);
  std::map<int64_t, std::pair<double, double>> measured_latency_us;
  auto both_latencies = [&](int64_t count) {
    auto it = measured_latency_us.find(count);
    if (it == measured_latency_us.end()) {
      const double nccl = value_or_fail(measure_nccl_all_reduce_us(latency_gpus, count, 100));
      const Result<double> p2p = measure_p2p_all_reduce_us(latency_gpus, count, 100);
      if (!p2p.ok()) std::fprintf(stderr, "  one-shot P2P all-reduce unavailable: %s\n", p2p.message().c_str());
      it = measured_latency_us.emplace(count, std::make_pair(nccl, p2p.ok() ? p2p.value() : 0.0)).first;
    }
    return it->second;
  };
  auto latency_us = [&](int64_t count) -> double {
    if (measured || visible < 2) return o.allreduce_us;
    const auto [nccl, p2p] = both_latencies(count);
    return p2p > 0 ? std::min(nccl, p2p) : nccl;
  };
  if (visible >= 2) {
    std::printf("\nall-reduce latency in a CUDA graph, %d x %s, float32 in place (us per call)\n", latency_gpus,
                device.c_str());
    std::printf("| floats | B x D | NCCL | one-shot P2P |\n|---|---|---|---|\n");
    for (const TpBenchShape& s : shapes) {
      for (int B : o.batches) {
        const int64_t count = static_cast<int64_t>(B) * s.config.dim;
        const auto [nccl, p2p] = both_latencies(count);
        std::printf("| %lld | %d x %d | %.2f | %s |\n", static_cast<long long>(count), B, s.config.dim, nccl,
                    p2p > 0 ? str_cat(p2p).c_str() : "-");
      }
    }
  }
  std::vector<TpRow> rows;
  for (const TpBenchShape& s : shapes) {
    const ModelConfig shard = value_or_fail(tp_shard_config(s.config, o.tp));
    for (int ctx : o.contexts) {
      if (ctx + kCacheSlack > s.config.max_context) fail(str_cat("--ctx ", ctx, " is too long for ", s.name));
      std::vector<double> baseline_tp_ms;
      for (const auto& [plan_name, plan] : s.plans) {
        check_or_fail(validate_lp_plan(plan, s.config.n_layers));
        std::fprintf(stderr, "  %s lp=%s ctx=%d: tp 1 on GPU 0...\n", s.name.c_str(), plan_name.c_str(), ctx);
        check_or_fail(cuda_set_device(0));
        const Timings one = value_or_fail(time_model(s.config, plan, o, ctx, o.seed, nullptr));
        Timings tp, rank_shard;
        if (measured) {
          std::fprintf(stderr, "  %s lp=%s ctx=%d: tp %d over %d GPUs...\n", s.name.c_str(), plan_name.c_str(), ctx,
                       o.tp, o.tp);
          tp = value_or_fail(time_tensor_parallel(shard, plan, o, ctx));
        } else {
          std::fprintf(stderr, "  %s lp=%s ctx=%d: one rank's shard on GPU 0...\n", s.name.c_str(), plan_name.c_str(), ctx);
          rank_shard = value_or_fail(time_model(shard, plan, o, ctx, o.seed, nullptr));
        }
        const int depth = s.config.n_layers - static_cast<int>(plan.pair_starts.size());
        for (size_t i = 0; i < o.batches.size(); ++i) {
          TpRow r;
          r.shape = s.name;
          r.plan = plan_name;
          r.depth = depth;
          r.batch = o.batches[i];
          r.ctx = ctx;
          r.allreduces = 2 * depth;
          r.tp1_ms = one.decode_ms[i];
          if (measured) {
            r.tp_ms = tp.decode_ms[i];
          } else {
            r.shard_ms = rank_shard.decode_ms[i];
            r.allreduce_us = latency_us(static_cast<int64_t>(r.batch) * s.config.dim);
            r.tp_ms = r.shard_ms + r.allreduces * r.allreduce_us * 1e-3;
          }
          r.scaling = r.tp1_ms / r.tp_ms;
          if (plan.empty()) baseline_tp_ms.push_back(r.tp_ms);
          r.lp_speedup = i < baseline_tp_ms.size() ? baseline_tp_ms[i] / r.tp_ms : 0;
          if (o.prefill > 0) {
            r.tp1_prefill_tok_s = o.prefill * 1e3 / one.prefill_ms;
            if (measured) {
              r.tp_prefill_tok_s = o.prefill * 1e3 / tp.prefill_ms;
            } else {
              const double us = latency_us(static_cast<int64_t>(o.prefill) * s.config.dim);
              r.tp_prefill_tok_s = us > 0 ? o.prefill * 1e3 / (rank_shard.prefill_ms + r.allreduces * us * 1e-3) : 0;
            }
          }
          std::fprintf(stderr, "  %-14s lp=%-8s L=%-3d B=%-3d tp1 %8.3f ms  tp%d %8.3f ms  x%.2f  LP x%.3f\n",
                       r.shape.c_str(), r.plan.c_str(), r.depth, r.batch, r.tp1_ms, o.tp, r.tp_ms, r.scaling,
                       r.lp_speedup);
          rows.push_back(r);
        }
      }
    }
  }

  const char* kind = measured ? "measured" : "estimated";
  std::printf("\nduet bench --tp %d (%s): %d x %s visible, bf16, CUDA graphs%s\n", o.tp, kind, visible, device.c_str(),
              measured ? (o.p2p ? ", one-shot P2P all-reduces inside the graphs" : ", NCCL all-reduces inside the graphs")
              : visible >= 2 ? ", all-reduce latency measured by NCCL in a CUDA graph over the visible GPUs"
                             : ", all-reduce latency ASSUMED (--allreduce-us)");
  std::printf("| shape | LP plan | L | ctx | B | all-reduces/step | tp1 ms/step | shard ms/step | all-reduce us | "
              "tp%d ms/step (%s) | TP scaling | LP speedup at tp%d | prefill %d tok/s tp1 | tp%d |\n",
              o.tp, kind, o.tp, o.prefill, o.tp);
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const TpRow& r : rows) {
    std::printf("| %s | %s | %d | %d | %d | %d | %.3f | %s | %s | %.3f | %.2f | %.3f | %.0f | %.0f |\n", r.shape.c_str(),
                r.plan.c_str(), r.depth, r.ctx, r.batch, r.allreduces, r.tp1_ms,
                measured ? "-" : str_cat(r.shard_ms).c_str(), measured ? "-" : str_cat(r.allreduce_us).c_str(),
                r.tp_ms, r.scaling, r.lp_speedup, r.tp1_prefill_tok_s, r.tp_prefill_tok_s);
  }
  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["device"] = device;
    j["gpus_visible"] = visible;
    j["tp"] = o.tp;
    j["mode"] = kind;
    j["allreduce"] = o.p2p ? "p2p" : "nccl";
    j["prefill_tokens"] = o.prefill;
    for (const TpRow& r : rows) {
      j["results"].push_back({{"shape", r.shape}, {"lp_plan", r.plan}, {"depth", r.depth}, {"context", r.ctx},
                              {"batch", r.batch}, {"allreduces_per_step", r.allreduces},
                              {"tp1_ms_per_step", r.tp1_ms}, {"tp_ms_per_step", r.tp_ms},
                              {"shard_ms_per_step", r.shard_ms}, {"allreduce_us", r.allreduce_us},
                              {"tp_scaling", r.scaling}, {"lp_speedup", r.lp_speedup},
                              {"tp1_prefill_tokens_per_s", r.tp1_prefill_tok_s},
                              {"tp_prefill_tokens_per_s", r.tp_prefill_tok_s}});
    }
    std::ofstream out(o.json_path);
    out << j.dump(2) << "\n";
    if (!out) fail("cannot write " + o.json_path);
    std::fprintf(stderr, "wrote %s\n", o.json_path.c_str());
  }
}

#endif

}  // namespace duet::cli
