// Healing: train only the LP wide layers of a model to win back what LP costs,
// in stages (docs/layer-parallelism.md, "Recovering accuracy"):
//   local:  each wide layer alone reproduces the original pair's output (MSE,
//           normalised by the target's norm) from the original hidden state
//           entering the pair. Pairs are independent problems; they step
//           together on the same sequences, so one original forward per
//           sequence feeds all of them.
//   global: the whole LP model against the original's next-token
//           distributions (KL(P_orig || P_lp)), gradients flowing back
//           through the frozen layers above into the wide layers.
//   lm:     next-token cross-entropy on the training text.
// Each stage runs a fresh AdamW (fp32 weights and moments of the wide layers
// only) over the same sequences, warmup + cosine schedule, global-norm
// clipping, gradient accumulation over `batch` sequences per step.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/weights.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/data.h"

namespace duet::train {

enum class Stage { Local, Global, Lm };
const char* stage_name(Stage stage);
// "local,global" -> [Local, Global]; errors name an unknown or repeated stage.
Result<std::vector<Stage>> parse_stages(const std::string& text);

struct StepReport {
  Stage stage = Stage::Local;
  int64_t step = 0;   // 1-based, within the stage
  int64_t steps = 0;  // the stage's total
  float loss = 0;     // mean over the step's sequences (and pairs, for local)
  float lr = 0;
  double grad_norm = 0;  // before clipping
  double tokens_per_second = 0;
  double eta_seconds = 0;  // for the rest of this stage
};

// Activation memory of the global and lm stages: the backward reads every layer's activations from the lowest
// trained layer up. Off keeps them all; On keeps only each layer's input and runs the layer's forward again in
// the backward (the same gradients, bit for bit, for one more forward of those layers). Auto: --device cuda
// turns it on when the kept activations would not fit the GPU's free memory; the CPU, which trains one
// sequence at a time, keeps them.
enum class Recompute { Auto, On, Off };

struct HealOptions {
  std::vector<Stage> stages{Stage::Local};
  int batch = 8;              // sequences per optimizer step
  float lr = 1e-4f;           // peak learning rate
  float min_lr_ratio = 0.1f;  // the cosine ends at lr * min_lr_ratio
  float warmup = 0.05f;       // fraction of a stage's steps spent warming up
  float clip = 1.0f;          // global gradient norm limit (0: none)
  AdamWConfig adamw;
  uint64_t seed = 0;            // shuffles the sequences of each stage
  std::string checkpoint_path;  // empty: no checkpoints
  int save_every = 0;           // steps between checkpoints (0: at the end of each stage only)
  bool resume = false;          // continue from checkpoint_path
  int64_t max_steps = 0;        // stop (with a checkpoint) after this many steps in this run; 0: run to the end
  Recompute recompute = Recompute::Auto;
  std::string identity;         // the run's description; a resumed checkpoint must carry the same
  std::function<void(const StepReport&)> on_step;
};

struct StageSummary {
  Stage stage = Stage::Local;
  int64_t steps = 0;
  float first_loss = 0, last_loss = 0;  // of the first and last step run in this process
};

struct HealResult {
  bool finished = false;  // false when max_steps stopped the run early
  std::vector<StageSummary> stages;
  int64_t tokens_trained = 0;  // tokens through the optimizer in this process
  double kl_before = 0;        // mean KL(original || model) on the held-out sequences, before and after
  double kl_after = 0;
  bool recomputed = false;  // a global or lm stage recomputed activations in its backward
};

// The checkpoint a resumed run continues from: errors for a missing, corrupt or foreign file (another
// run identity). heal() calls it; the CLI calls it first too, to fail before generating data.
Result<Checkpoint> load_resume_checkpoint(const HealOptions& options);
// Errors when a loaded checkpoint holds other tensors than `layout` or a stage/step outside the run.
Status check_resumable(const Checkpoint& c, const ParamLayout& layout, const HealOptions& options);

// Trains the wide layers of `lp` (the original after an LP plan) in place; `original` stays as loaded.
Result<HealResult> heal(const ModelWeights& original, ModelWeights& lp, const TrainData& data, const HealOptions& options);

// Mean per-token KL(P || Q) of two models' next-token distributions over sequences (CpuModel for both).
Result<double> mean_kl(const ModelWeights& p, const ModelWeights& q, const std::vector<std::vector<int32_t>>& sequences);

}  // namespace duet::train
