#include "cli/common.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#ifdef DUET_HAVE_CUDA
#include "backends/cuda/cuda_batch_decoder.h"
#include "backends/cuda/cuda_decoder.h"
#endif
#ifdef DUET_HAVE_NCCL
#include "backends/cuda/cuda_tp_decoder.h"
#endif

namespace duet::cli {

void LpOptions::add_to(CLI::App& cmd) {
  auto* lp = cmd.add_option("--lp", lp_range, "LP range START:END: pairs (START,START+1) .. (END-2,END-1)");
  auto* pairs = cmd.add_option("--lp-pairs", lp_pairs, "LP pairs named by their first layer, e.g. 4,8,20");
  auto* file = cmd.add_option("--lp-plan", lp_plan_file, "file holding an LP range or pair list");
  lp->excludes(pairs)->excludes(file);
  pairs->excludes(file);
}

Result<LpPlan> LpOptions::plan() const {
  if (!lp_range.empty()) return parse_lp_range(lp_range);
  if (!lp_pairs.empty()) return parse_lp_pairs(lp_pairs);
  if (!lp_plan_file.empty()) return read_lp_plan_file(lp_plan_file);
  return LpPlan{};
}

void ModelOptions::add_to(CLI::App& cmd, bool with_ctx) {
  cmd.add_option("-m,--model", model, "GGUF file or HF safetensors directory")->capture_default_str();
  LpOptions::add_to(cmd);
  cmd.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd.add_option("-t,--threads", threads, "CPU threads (default: all cores)");
  if (with_ctx) cmd.add_option("--ctx", ctx, "context positions to allocate (default depends on the command)");
}

void ModelOptions::add_tp_to(CLI::App& cmd) {
  cmd.add_option("--tp", tp, "tensor-parallel ranks: threads on --device cpu, one GPU each on cuda")
      ->capture_default_str();
}

void ModelOptions::add_cpu_math_to(CLI::App& cmd) {
  cmd.add_option("--cpu-math", cpu_math,
                 "CPU products with quantized weights: int8 (activations rounded to 8 bits per 32 values, as "
                 "llama.cpp), float32 (the exact reference), or auto (int8; float32 under --tp > 1)")
      ->check(CLI::IsMember({"auto", "int8", "float32"}))
      ->capture_default_str();
}

void set_threads(int threads) {
  if (threads <= 0) {
    threads = static_cast<int>(std::thread::hardware_concurrency());
    // Under mpirun the ranks on this host share its cores.
    if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE"); local && std::atoi(local) > 1) {
      threads = std::max(1, threads / std::atoi(local));
    }
  }
  omp_set_num_threads(threads);  // OpenBLAS runs single-threaded inside (kernels/cpu/matmul.cpp)
}

Result<LoadedModel> load(const ModelOptions& options) {
  set_threads(options.threads);
  DUET_ASSIGN_OR_RETURN(LpPlan plan, options.plan());
  return load_model(options.model, plan);
}

Result<std::unique_ptr<Decoder>> make_decoder(const ModelWeights& weights, const std::string& device, int capacity,
                                              int tp, CpuArithmetic arithmetic) {
  if (tp < 1) return make_error("--tp must be at least 1 (got ", tp, ")");
  if (device == "cpu") {
    if (tp > 1) return make_cpu_tp_decoder(weights, capacity, tp, arithmetic);
    return make_cpu_decoder(weights, capacity, arithmetic);
  }
#ifdef DUET_HAVE_CUDA
  if (device == "cuda") {
#ifdef DUET_HAVE_NCCL
    if (tp > 1) return make_cuda_tp_decoder(weights, capacity, tp);
#else
    if (tp > 1) return make_error("--tp ", tp, " on --device cuda needs NCCL, and this build has none");
#endif
    return make_cuda_decoder(weights, capacity);
  }
#endif
  return make_error("device '", device, "' is not available in this build (built without CUDA)");
}

Result<std::unique_ptr<BatchDecoder>> make_batch_decoder(const ModelWeights& weights, const std::string& device,
                                                         int slots, int capacity, int tp,
                                                         CpuArithmetic arithmetic) {
  if (tp < 1) return make_error("--tp must be at least 1 (got ", tp, ")");
  if (device == "cpu") {
    if (tp > 1) return make_cpu_tp_batch_decoder(weights, slots, capacity, tp, arithmetic);
    return make_cpu_batch_decoder(weights, slots, capacity, arithmetic);
  }
#ifdef DUET_HAVE_CUDA
  if (device == "cuda") {
#ifdef DUET_HAVE_NCCL
    if (tp > 1) return make_cuda_tp_batch_decoder(weights, slots, capacity, 1024, tp);
#else
    if (tp > 1) return make_error("--tp ", tp, " on --device cuda needs NCCL, and this build has none");
#endif
    return make_cuda_batch_decoder(weights, slots, capacity, 1024);
  }
#endif
  return make_error("device '", device, "' is not available in this build (built without CUDA)");
}

void fail(const std::string& message) {
  std::fprintf(stderr, "duet: error: %s\n", message.c_str());
  throw CLI::RuntimeError(1);
}

}  // namespace duet::cli
