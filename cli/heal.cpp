// duet heal: trains only the LP wide layers of a model to win back the
// accuracy LP costs (src/train/heal.h), then writes the healed model as a deci
// GGUF through duet export's writer (model/gguf_export.h): duet and llama.cpp load it.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/gguf_export.h"
#include "train/heal.h"
#ifdef DUET_HAVE_CUDA
#include "train/cuda/heal_cuda.h"
#endif

namespace duet::cli {
namespace {

struct HealCliOptions {
  ModelOptions model;
  std::string stages = "local";
  int64_t tokens = 32768;
  int seq_len = 256;
  int batch = 8;
  float lr = 1e-4f;
  float warmup = 0.05f;
  float clip = 1.0f;
  float weight_decay = 0.0f;
  std::vector<std::string> data;
  uint64_t seed = 0;
  int heldout = 4;
  std::string output;
  std::string export_type = "f16";
  std::string checkpoint;
  int save_every = 0;
  bool resume = false;
  int64_t max_steps = 0;
  std::string log;
  int micro_batch = 8;
  std::string recompute = "auto";
};

// Documents the original model writes at once on the GPU (decode batch of the data generation).
constexpr int kCudaGenerationBatch = 64;

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return str_cat(s / 3600, ":", (s / 600) % 6, (s / 60) % 10, ":", (s % 60) / 10, s % 10);
}

// What a checkpoint must share with the run that resumes it.
std::string run_identity(const HealCliOptions& o, const LpPlan& plan) {
  return nlohmann::json{{"model", o.model.model}, {"plan", plan.describe()}, {"stages", o.stages},
                        {"tokens", o.tokens},      {"seq_len", o.seq_len},   {"batch", o.batch},
                        {"seed", o.seed},          {"data", o.data},         {"heldout", o.heldout},
                        {"device", o.model.device}}
      .dump();
}

void run(const HealCliOptions& o) {
  const bool cuda = o.model.device == "cuda";
#ifdef DUET_HAVE_CUDA
  if (cuda) check_or_fail(train::cuda_device_available());
#else
  if (cuda) fail("duet heal --device cuda: this build has no CUDA backend (built without nvcc); use --device cpu");
#endif
  const std::vector<train::Stage> stages = value_or_fail(train::parse_stages(o.stages));
  if (o.recompute != "auto" && o.recompute != "on" && o.recompute != "off") {
    fail(str_cat("--recompute ", o.recompute, ": expected auto, on or off"));
  }
  const ExportType type = value_or_fail(parse_export_type(o.export_type));
  const LpPlan plan = value_or_fail(o.model.plan());
  if (plan.empty()) fail("duet heal needs an LP plan (--lp, --lp-pairs or --lp-plan): it trains the wide layers");
  const std::filesystem::path out_dir = std::filesystem::absolute(o.output).parent_path();
  if (!std::filesystem::is_directory(out_dir)) fail(str_cat("-o ", o.output, ": directory ", out_dir.string(), " does not exist"));

  set_threads(o.model.threads);
  LoadedModel lp = value_or_fail(load_model(o.model.model, plan));
  LoadedModel original = value_or_fail(load_model(o.model.model, LpPlan{}));
  const ModelConfig& c = original.weights.config;
  check_or_fail(check_exportable(lp));  // the output must be writable as GGUF: fail now, not after training
  if (o.seq_len > c.max_context) {
    fail(str_cat("--seq-len ", o.seq_len, " exceeds the model's context of ", c.max_context, " positions"));
  }
  const int64_t per_step = static_cast<int64_t>(o.batch) * o.seq_len;
  if (o.tokens < per_step) {
    fail(str_cat("--tokens ", o.tokens, " is less than one step (--batch ", o.batch, " x --seq-len ", o.seq_len, " = ",
                 per_step, " tokens)"));
  }

  train::HealOptions h;
  h.stages = stages;
  h.batch = o.batch;
  h.lr = o.lr;
  h.warmup = o.warmup;
  h.clip = o.clip;
  h.adamw.weight_decay = o.weight_decay;
  h.seed = o.seed;
  h.checkpoint_path = o.checkpoint.empty() ? o.output + ".ckpt" : o.checkpoint;
  h.save_every = o.save_every;
  h.resume = o.resume;
  h.max_steps = o.max_steps;
  h.recompute = o.recompute == "on" ? train::Recompute::On : o.recompute == "off" ? train::Recompute::Off
                                                                               : train::Recompute::Auto;
  h.identity = run_identity(o, plan);
  if (o.resume) value_or_fail(train::load_resume_checkpoint(h));  // fail before the data is generated

  std::ofstream log;
  if (!o.log.empty()) {
    log.open(o.log, o.resume ? std::ios::app : std::ios::trunc);
    if (!log) fail(str_cat("cannot write --log ", o.log));
  }
  auto log_line = [&](const nlohmann::json& j) {
    if (log) log << j.dump() << "\n" << std::flush;
  };

  train::DataOptions data_options;
  data_options.sequences = static_cast<int>(o.tokens / o.seq_len / o.batch * o.batch);
  data_options.heldout_sequences = o.heldout;
  data_options.seq_len = o.seq_len;
  data_options.files = o.data;
  data_options.seed = o.seed;
  data_options.on_progress = [](int64_t done, int64_t total) {
    std::fprintf(stderr, "\rheal data: %lld/%lld tokens written by the model", static_cast<long long>(done),
                 static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
  };
  const auto data_start = std::chrono::steady_clock::now();
  auto build_data = [&]() -> Result<train::TrainData> {
#ifdef DUET_HAVE_CUDA
    if (cuda) {
      return train::build_train_data_cuda(original.weights, original.tokenizer, data_options, kCudaGenerationBatch);
    }
#endif
    return train::build_train_data(original.weights, original.tokenizer, data_options);
  };
  const train::TrainData data = value_or_fail(build_data());
  const double data_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - data_start).count();
  log_line({{"event", "data"}, {"device", o.model.device}, {"seconds", data_seconds}, {"train_sequences", data.train.size()}, {"heldout_sequences", data.heldout.size()},
            {"seq_len", o.seq_len}, {"file_tokens", data.file_tokens}, {"generated_tokens", data.generated_tokens},
            {"files", o.data}});

  h.on_step = [&](const train::StepReport& r) {
    std::fprintf(stderr, "\rheal %s step %lld/%lld loss %.5f lr %.2e %.0f tok/s ETA %s   ", train::stage_name(r.stage),
                 static_cast<long long>(r.step), static_cast<long long>(r.steps), r.loss, r.lr, r.tokens_per_second,
                 format_duration(r.eta_seconds).c_str());
    if (r.step == r.steps) std::fprintf(stderr, "\n");
    log_line({{"event", "step"}, {"stage", train::stage_name(r.stage)}, {"step", r.step}, {"steps", r.steps},
              {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"tokens_per_s", r.tokens_per_second}});
  };
  auto run_heal = [&]() -> Result<train::HealResult> {
#ifdef DUET_HAVE_CUDA
    if (cuda) return train::heal_cuda(original.weights, lp.weights, data, h, {o.micro_batch});
#endif
    return train::heal(original.weights, lp.weights, data, h);
  };
  const train::HealResult result = value_or_fail(run_heal());
  if (!result.finished) {
    std::fprintf(stderr, "\nheal: stopped after --max-steps %lld; checkpoint %s; rerun with --resume to continue\n",
                 static_cast<long long>(o.max_steps), h.checkpoint_path.c_str());
    return;
  }
  // KL is measured on the held-out sequences only; without them it is unknown (null), not zero.
  const nlohmann::json kl_before = data.heldout.empty() ? nlohmann::json() : nlohmann::json(result.kl_before);
  const nlohmann::json kl_after = data.heldout.empty() ? nlohmann::json() : nlohmann::json(result.kl_after);
  nlohmann::json stage_losses = nlohmann::json::array();
  for (const train::StageSummary& st : result.stages) {
    stage_losses.push_back({{"stage", train::stage_name(st.stage)}, {"steps", st.steps}, {"first_loss", st.first_loss},
                            {"last_loss", st.last_loss}});
  }
  const nlohmann::json done = {{"kl_before", kl_before}, {"kl_after", kl_after}, {"tokens_trained", result.tokens_trained},
                               {"stages", stage_losses}, {"recomputed", result.recomputed}};
  nlohmann::json event = done;
  event["event"] = "done";
  log_line(event);
  check_or_fail(export_gguf(lp, type, o.output));
  std::printf("healed %s (LP pairs %s, depth %d) -> %s\n", o.model.model.c_str(), plan.describe().c_str(),
              lp.weights.depth(), o.output.c_str());
  std::printf("%s\n", done.dump().c_str());
}

}  // namespace

void add_heal_command(CLI::App& app) {
  auto o = std::make_shared<HealCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "heal", "train only the LP wide layers to win back LP's accuracy loss; writes the healed model as GGUF");
  o->model.add_to(*cmd, /*with_ctx=*/false);
  cmd->add_option("-o,--output", o->output, "healed model (GGUF)")->required();
  cmd->add_option("--type", o->export_type, "encoding of the healed model's matrices: f32, f16, bf16, q8_0")
      ->capture_default_str();
  cmd->add_option("--stage", o->stages, "stages in order, from local (per pair, MSE), global (KL to the original's "
                                        "logits), lm (next-token cross-entropy)")->capture_default_str();
  cmd->add_option("--tokens", o->tokens, "training tokens per stage")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seq-len", o->seq_len, "tokens per training sequence")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--batch", o->batch, "sequences per optimizer step (gradient accumulation)")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--lr", o->lr, "peak learning rate (warmup, then cosine to 10%)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o->warmup, "fraction of each stage's steps spent warming up")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--clip", o->clip, "global gradient-norm limit; 0 = none")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--data", o->data, "text files to train on first (the model writes the rest of --tokens itself)");
  cmd->add_option("--seed", o->seed, "seed of the generated text and of the sequence order")->capture_default_str();
  cmd->add_option("--heldout", o->heldout, "generated sequences kept apart to report KL to the original before/after")
      ->capture_default_str()->check(CLI::Range(0, 1 << 16));
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint file (default: OUTPUT.ckpt)");
  cmd->add_option("--save-every", o->save_every, "steps between checkpoints; 0 = end of each stage")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_flag("--resume", o->resume, "continue from the checkpoint at the step it saved");
  cmd->add_option("--max-steps", o->max_steps, "stop after this many steps (with a checkpoint); 0 = run to the end")->check(CLI::NonNegativeNumber);
  cmd->add_option("--log", o->log, "JSON-lines log (data, every step, the result)");
  cmd->add_option("--micro-batch", o->micro_batch, "--device cuda: sequences per forward/backward on the GPU (of --batch)")
      ->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--recompute", o->recompute, "global/lm stages: recompute each layer's forward in the backward "
                                               "instead of keeping its activations (on, off, auto: --device cuda "
                                               "when they would not fit the GPU)")
      ->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace duet::cli
