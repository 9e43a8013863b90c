// Options and helpers shared by the duet subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "core/result.h"
#include "model/lp_plan.h"
#include "runtime/batch_decoder.h"
#include "runtime/decoder.h"
#include "runtime/loaded_model.h"

namespace duet::cli {

inline constexpr const char* kDefaultModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

// --lp/--lp-pairs/--lp-plan.
struct LpOptions {
  std::string lp_range, lp_pairs, lp_plan_file;

  void add_to(CLI::App& cmd);
  Result<LpPlan> plan() const;
};

// -m/--model, --lp/--lp-pairs/--lp-plan, --device, -t/--threads, --ctx.
struct ModelOptions : LpOptions {
  std::string model = kDefaultModel;
  std::string device = "cpu";
  int threads = 0;  // 0: all cores
  int ctx = 0;      // 0: command's default, capped by the model's context
  int tp = 1;       // tensor-parallel ranks (--tp; only commands that call add_tp_to)
  std::string cpu_math = "auto";  // --cpu-math: int8 (llama.cpp's arithmetic), float32 (the reference), auto

  // auto: int8, except float32 under --tp > 1, where int8 ranks do not yet reproduce one rank's int8 logits
  // (1.4 apart on SmolLM2 --tp 3, the size of int8's own rounding) and float32 ranks do (5e-5).
  CpuArithmetic arithmetic() const {
    if (cpu_math == "auto") return tp > 1 ? CpuArithmetic::kFloat32 : CpuArithmetic::kInt8;
    return cpu_math == "float32" ? CpuArithmetic::kFloat32 : CpuArithmetic::kInt8;
  }

  void add_to(CLI::App& cmd, bool with_ctx = true);
  // --tp N: run the model over N tensor-parallel ranks (threads on cpu, GPUs on cuda).
  void add_tp_to(CLI::App& cmd);
  // --cpu-math int8|float32 (commands that pass arithmetic() to their decoder).
  void add_cpu_math_to(CLI::App& cmd);
};

// Applies --threads to OpenMP (the CPU kernels' only thread pool); by default
// all cores, shared among the ranks mpirun started on this host.
void set_threads(int threads);

Result<LoadedModel> load(const ModelOptions& options);

// A decoder on --device with `capacity` positions, over `tp` tensor-parallel ranks.
Result<std::unique_ptr<Decoder>> make_decoder(const ModelWeights& weights, const std::string& device, int capacity,
                                              int tp = 1, CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

// A batch decoder (server slots) on --device: `slots` sequences of `capacity` positions, over `tp`
// tensor-parallel ranks (threads on cpu; on cuda forked workers, made before this process touches CUDA).
Result<std::unique_ptr<BatchDecoder>> make_batch_decoder(const ModelWeights& weights, const std::string& device,
                                                         int slots, int capacity, int tp = 1,
                                                         CpuArithmetic arithmetic = CpuArithmetic::kFloat32);

// Prints "duet: error: <message>" and ends the command with exit code 1.
[[noreturn]] void fail(const std::string& message);

// Unwraps a Result or fails the command with its message.
template <class T>
T value_or_fail(Result<T> result) {
  if (!result.ok()) fail(result.message());
  return std::move(result).value();
}
inline void check_or_fail(const Status& status) {
  if (!status.ok()) fail(status.message());
}

}  // namespace duet::cli
