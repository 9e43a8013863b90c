// The healing loop on the GPU (train/cuda/heal_cuda.h), step for step the
// Healer of train/heal.cpp: parameters, gradients and AdamW moments of the wide
// layers live in flat fp32 device buffers; the host sees the losses and the
// gradient norm once per optimizer step (one synchronisation).
//
// Memory: each phase of a run uploads only the weights it reads (see
// CudaHealer::enter), so a 7B model's local stage holds the original's layers
// below the last pair, the wide layers' parameters, gradients and moments, and
// one wide layer's activations; the global and lm stages recompute activations
// in the backward when keeping them would not fit (HealOptions::recompute).
#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <optional>
#include <random>

#include "core/check.h"
#include "train/cuda/heal_cuda.h"
#include "train/cuda/model.cuh"

namespace duet::train {
namespace {

using Clock = std::chrono::steady_clock;
namespace gpu = cuda;

struct LocalPair {
  int layer = 0;
  int input_boundary = 0;
  int target_boundary = 0;
};

// The stream, cuBLAS handle and reduction scratch of one run.
class Context {
 public:
  ~Context() {
    if (ctx.blas) cublasDestroy(ctx.blas);
    if (ctx.stream) cudaStreamDestroy(ctx.stream);
  }
  Status init() {
    DUET_CUDA_TRY(cudaStreamCreate(&ctx.stream));
    DUET_CUDA_TRY(cublasCreate(&ctx.blas));
    DUET_TRY(reduce_.reserve(gpu::TrainContext::kReduceSlots));
    ctx.reduce = reduce_.get();
    return ok_status();
  }
  gpu::TrainContext ctx;

 private:
  gpu::DeviceArray<double> reduce_;
};

// The original model's logits [B*T, V] for tokens: the hidden state leaving the last layer, norm, output matrix.
Status original_logits(const gpu::TrainContext& ctx, const gpu::DeviceWeights& w, const int32_t* tokens, int B, int T,
                       std::vector<gpu::DeviceArray<float>>& states, gpu::ForwardWorkspace& ws,
                       gpu::DeviceArray<float>& rstd, gpu::DeviceArray<float>& xn, gpu::DeviceArray<float>& logits) {
  const ModelConfig& c = w.host().config;
  const int R = B * T;
  DUET_TRY(gpu::hidden_states(ctx, w, tokens, B, T, {w.host().depth()}, states, ws));
  DUET_TRY(rstd.reserve(R));
  DUET_TRY(xn.reserve(static_cast<int64_t>(R) * c.dim));
  DUET_TRY(logits.reserve(static_cast<int64_t>(R) * c.vocab_size));
  DUET_TRY(gpu::rms_norm_forward(ctx, states[0].get(), w.output_norm(), xn.get(), rstd.get(), R, c.dim, c.rms_eps));
  DUET_TRY(gpu::matmul_forward(ctx, xn.get(), w.output(), nullptr, logits.get(), R, c.vocab_size, c.dim));
  return ok_status();
}

class CudaHealer {
 public:
  CudaHealer(const ModelWeights& original, ModelWeights& lp, const TrainData& data, const HealOptions& o,
             const CudaHealOptions& co)
      : original_(original), lp_(lp), data_(data), o_(o), micro_(std::max(1, std::min(co.micro_batch, o.batch))),
        layout_(param_layout(lp, wide_layers(lp))), T_(static_cast<int>(data.train.front().size())) {
    for (int l : layout_.layers()) {
      const std::vector<int>& src = lp.layers[l].source_layers;
      pairs_.push_back({l, src.front(), src.back() + 1});
      last_boundary_ = std::max(last_boundary_, src.back() + 1);
    }
  }

  Status init() {
    DUET_TRY(context_.init());
    std::vector<float> host(layout_.total);
    gather_params(lp_, layout_, host.data());
    DUET_TRY(params_.upload(host));
    DUET_TRY(tokens_.reserve(static_cast<int64_t>(micro_) * T_));
    DUET_TRY(losses_.reserve(static_cast<int64_t>(o_.batch) * std::max<size_t>(1, pairs_.size()) + 1));
    DUET_TRY(tnorms_.reserve(losses_.size()));
    DUET_TRY(norm2_.reserve(1));
    return ok_status();
  }

  Result<HealResult> run() {
    HealResult result;
    DUET_ASSIGN_OR_RETURN(result.kl_before, heldout_kl());
    int first_stage = 0;
    int64_t first_step = 0;
    std::optional<Checkpoint> resumed;  // its moments go up once the stage's buffers exist
    if (o_.resume) {
      DUET_ASSIGN_OR_RETURN(Checkpoint c, load_resume_checkpoint(o_));
      DUET_TRY(check_resumable(c, layout_, o_));
      DUET_TRY(params_.upload(c.params));
      first_stage = c.stage;
      first_step = c.step;
      resumed = std::move(c);
    }
    int64_t run_steps = 0;
    std::vector<float> losses;
    for (int s = first_stage; s < static_cast<int>(o_.stages.size()); ++s) {
      const Stage stage = o_.stages[s];
      const int64_t steps = static_cast<int64_t>(data_.train.size()) / o_.batch;
      const int64_t warmup = std::max<int64_t>(1, static_cast<int64_t>(o_.warmup * steps));
      const int64_t step0 = s == first_stage ? first_step : 0;
      DUET_TRY(enter(stage));
      if (stage != Stage::Local) {
        DUET_ASSIGN_OR_RETURN(const bool recompute, choose_recompute());
        result.recomputed = result.recomputed || recompute;
      }
      if (resumed) {
        DUET_TRY(m_.upload(resumed->m));
        DUET_TRY(v_.upload(resumed->v));
        resumed.reset();
      }
      if (step0 == 0) {
        DUET_TRY(m_.zero(layout_.total, ctx().stream));
        DUET_TRY(v_.zero(layout_.total, ctx().stream));
      }
      const std::vector<size_t> order = sequence_order(s);
      StageSummary summary{stage, steps, 0, 0};
      const auto stage_start = Clock::now();
      for (int64_t step = step0; step < steps; ++step) {
        DUET_TRY(grads_.zero(layout_.total, ctx().stream));
        int slots = 0;
        for (int b0 = 0; b0 < o_.batch; b0 += micro_) {
          const int b = std::min(micro_, o_.batch - b0);
          std::vector<int32_t> tokens;
          for (int i = 0; i < b; ++i) {
            const std::vector<int32_t>& seq = data_.train[order[step * o_.batch + b0 + i]];
            tokens.insert(tokens.end(), seq.begin(), seq.end());
          }
          DUET_CUDA_TRY(cudaMemcpyAsync(tokens_.get(), tokens.data(), tokens.size() * sizeof(int32_t),
                                        cudaMemcpyHostToDevice, ctx().stream));
          DUET_TRY(accumulate(stage, b, slots));
        }
        DUET_TRY(gpu::grad_norm_squared(ctx(), grads_.get(), layout_.total, norm2_.get()));
        DUET_TRY(gpu::scale_by_clip(ctx(), grads_.get(), layout_.total, norm2_.get(), o_.clip));
        const float lr = lr_at(step, steps, warmup, o_.lr, o_.min_lr_ratio);
        DUET_TRY(gpu::adamw_update(ctx(), params_.get(), grads_.get(), m_.get(), v_.get(), layout_.total, step + 1, lr,
                                   o_.adamw.beta1, o_.adamw.beta2, o_.adamw.eps, o_.adamw.weight_decay));
        double norm2 = 0;
        losses.resize(slots);
        DUET_CUDA_TRY(cudaMemcpyAsync(&norm2, norm2_.get(), sizeof(double), cudaMemcpyDeviceToHost, ctx().stream));
        DUET_CUDA_TRY(cudaMemcpyAsync(losses.data(), losses_.get(), slots * sizeof(float), cudaMemcpyDeviceToHost,
                                      ctx().stream));
        DUET_CUDA_TRY(cudaStreamSynchronize(ctx().stream));
        const double loss = step_loss(stage, losses);
        ++run_steps;
        result.tokens_trained += static_cast<int64_t>(o_.batch) * T_;
        if (step == step0) summary.first_loss = static_cast<float>(loss);
        summary.last_loss = static_cast<float>(loss);
        if (o_.on_step) {
          const double seconds = std::chrono::duration<double>(Clock::now() - stage_start).count();
          const int64_t done = step + 1 - step0;
          o_.on_step({stage, step + 1, steps, static_cast<float>(loss), lr, std::sqrt(norm2),
                      done * o_.batch * T_ / std::max(seconds, 1e-9), seconds / done * (steps - step - 1)});
        }
        const bool stop = o_.max_steps > 0 && run_steps >= o_.max_steps && step + 1 < steps;
        if (stop || (o_.save_every > 0 && (step + 1) % o_.save_every == 0 && step + 1 < steps)) {
          DUET_TRY(save(s, step + 1));
        }
        if (stop) {
          result.stages.push_back(summary);
          DUET_TRY(download_params());
          return result;
        }
      }
      result.stages.push_back(summary);
      DUET_TRY(save(s + 1, 0));
    }
    DUET_TRY(download_params());
    result.finished = true;
    DUET_ASSIGN_OR_RETURN(result.kl_after, heldout_kl());
    return result;
  }

 private:
  const gpu::TrainContext& ctx() const { return context_.ctx; }

  // Puts on the device what the next phase reads and gives back the rest first, so that a phase needs only its
  // own memory:
  //   a stage: the parameters, gradients and AdamW moments of the wide layers, and
  //     local:  the original's layers below the last pair's target boundary; the wide layers' gains;
  //     global: both models whole (the LP model's wide layers as gains: their tensors are the parameters);
  //     lm:     the LP model whole;
  //   nullopt, the held-out KL (forward only): both models whole and the parameters.
  Status enter(std::optional<Stage> stage) {
    const std::string phase = stage ? str_cat("the ", stage_name(*stage), " stage") : std::string("the held-out KL");
    const gpu::WeightParts original = stage == Stage::Local ? gpu::layers_below(original_, last_boundary_)
                                      : stage == Stage::Lm  ? gpu::layers_below(original_, 0)
                                                            : gpu::whole_model(original_);
    const gpu::WeightParts lp =
        stage == Stage::Local ? gpu::trained_gains(lp_, layout_) : gpu::whole_model(lp_, &layout_);
    DUET_CUDA_TRY(cudaStreamSynchronize(ctx().stream));  // nothing in flight reads what is given back
    if (!stage) {
      for (gpu::DeviceArray<float>* b : {&grads_, &m_, &v_}) b->release();
    }
    if (stage != Stage::Local) {  // the local stage's buffers
      acts_ = gpu::LayerActs{};
      scratch_ = gpu::LayerScratch{};
      out_.release();
      dout_.release();
    } else {
      model_.reset();
    }
    const bool new_original = original_w_.parts() != original, new_lp = lp_w_.parts() != lp;
    if (new_original) original_w_.release();
    if (new_lp) lp_w_.release();
    auto fits = [&](const Status& st) -> Status {
      if (st.ok()) return st;
      return make_error(phase, " on the GPU: ", st.message());
    };
    if (new_original) DUET_TRY(fits(original_w_.upload(original_, T_, original)));
    if (new_lp) DUET_TRY(fits(lp_w_.upload(lp_, T_, lp)));
    if (stage) {
      for (gpu::DeviceArray<float>* b : {&grads_, &m_, &v_}) DUET_TRY(fits(b->reserve(layout_.total)));
    }
    if (stage != Stage::Local && !model_) model_ = std::make_unique<gpu::TrainModel>(lp_w_, layout_);
    return ok_status();
  }

  // HealOptions::recompute for the global or lm stage about to run (its weights and optimizer state in place):
  // Auto recomputes when the activations a micro-batch keeps, with what else a step allocates, would take more
  // than 90% of the memory free now (plus what kept activations already hold).
  Result<bool> choose_recompute() {
    bool on = o_.recompute == Recompute::On;
    if (o_.recompute == Recompute::Auto) {
      size_t free = 0, total = 0;
      DUET_CUDA_TRY(cudaMemGetInfo(&free, &total));
      const ModelConfig& c = lp_.config;
      const int64_t R = static_cast<int64_t>(micro_) * T_;
      // Logits, their gradient and the original's logits [R, V]; the [R, D] buffers of both forwards and the
      // backward; one recomputed layer's activations and the backward's scratch (at most the recompute bytes).
      const int64_t other = static_cast<int64_t>(sizeof(float)) * (3 * R * c.vocab_size + 16 * R * c.dim) +
                            model_->recompute_bytes(params_.get(), micro_, T_);
      const int64_t available = static_cast<int64_t>(free) + model_->held_bytes();
      on = static_cast<double>(model_->saved_bytes(params_.get(), micro_, T_) + other) > 0.9 * available;
    }
    model_->set_recompute(on);
    return on;
  }

  std::vector<size_t> sequence_order(int s) const {  // as train/heal.cpp: the same order on either device
    std::vector<size_t> order(data_.train.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(o_.seed * 1000003 + static_cast<uint64_t>(s));
    std::shuffle(order.begin(), order.end(), rng);
    return order;
  }

  // Adds the gradients of b sequences (in tokens_) scaled by 1/batch; writes their losses to losses_[slots..].
  // Local: one slot per sequence and pair; global and lm: one slot per micro-batch, weighted by b in step_loss.
  Status accumulate(Stage stage, int b, int& slots) {
    const ModelConfig& c = lp_.config;
    const int R = b * T_;
    const float scale = static_cast<float>(b) / o_.batch;
    if (stage == Stage::Local) {
      std::vector<int> boundaries;
      for (const LocalPair& p : pairs_) {
        boundaries.push_back(p.input_boundary);
        boundaries.push_back(p.target_boundary);
      }
      DUET_TRY(gpu::hidden_states(ctx(), original_w_, tokens_.get(), b, T_, boundaries, states_, forward_ws_));
      const int64_t TD = static_cast<int64_t>(T_) * c.dim;
      DUET_TRY(out_.reserve(R * static_cast<int64_t>(c.dim)));
      DUET_TRY(dout_.reserve(R * static_cast<int64_t>(c.dim)));
      for (size_t k = 0; k < pairs_.size(); ++k) {
        const int l = pairs_[k].layer;
        const float* x = states_[2 * k].get();
        const float* target = states_[2 * k + 1].get();
        DUET_TRY(gpu::layer_forward(ctx(), c, lp_w_.rope(), lp_w_.layer(l, layout_, params_.get()), x, b, T_, acts_,
                                    out_.get()));
        DUET_TRY(dout_.zero(R * static_cast<int64_t>(c.dim), ctx().stream));
        for (int i = 0; i < b; ++i) {  // the loss is normalised per sequence, as on the CPU
          float* loss = losses_.get() + slots;
          float* tnorm = tnorms_.get() + slots;
          ++slots;
          DUET_TRY(gpu::mse_forward(ctx(), out_.get() + i * TD, target + i * TD, TD, loss, tnorm));
          DUET_TRY(gpu::mse_backward(ctx(), out_.get() + i * TD, target + i * TD, tnorm, TD, 1.0f / o_.batch,
                                     dout_.get() + i * TD));
        }
        DUET_TRY(gpu::layer_backward(ctx(), c, lp_w_.rope(), lp_w_.layer(l, layout_, params_.get()), acts_,
                                     dout_.get(), nullptr, layer_grads(layout_, grads_.get(), l), scratch_));
      }
      return ok_status();
    }
    DUET_TRY(model_->forward(ctx(), params_.get(), tokens_.get(), b, T_));
    float* loss = losses_.get() + slots++;
    if (stage == Stage::Global) {
      DUET_TRY(original_logits(ctx(), original_w_, tokens_.get(), b, T_, states_, forward_ws_, rstd_, xn_, target_));
      DUET_TRY(gpu::kl_forward(ctx(), target_.get(), model_->logits(), R, c.vocab_size, loss));
      DUET_TRY(gpu::kl_backward(ctx(), target_.get(), model_->logits(), R, c.vocab_size, scale, model_->dlogits()));
    } else {
      DUET_TRY(gpu::cross_entropy_forward(ctx(), model_->logits(), tokens_.get(), b, T_, c.vocab_size, loss));
      DUET_TRY(gpu::cross_entropy_backward(ctx(), model_->logits(), tokens_.get(), b, T_, c.vocab_size, scale,
                                           model_->dlogits()));
    }
    return model_->backward(ctx(), params_.get(), grads_.get());
  }

  // The step's loss as the CPU reports it: the mean over sequences (and pairs, for local).
  double step_loss(Stage stage, const std::vector<float>& losses) const {
    double sum = 0;
    if (stage == Stage::Local) {
      for (float l : losses) sum += l;
      return sum / static_cast<double>(losses.size());
    }
    for (size_t i = 0; i < losses.size(); ++i) {
      sum += losses[i] * std::min(micro_, o_.batch - static_cast<int>(i) * micro_);
    }
    return sum / o_.batch;
  }

  // Mean per-token KL(original || LP model now) over the held-out sequences (train::mean_kl on the GPU).
  Result<double> heldout_kl() {
    const std::vector<std::vector<int32_t>>& seqs = data_.heldout;
    if (seqs.empty()) return 0.0;
    DUET_TRY(enter(std::nullopt));
    const ModelConfig& c = lp_.config;
    double total = 0;
    for (size_t s0 = 0; s0 < seqs.size(); s0 += micro_) {
      const int b = static_cast<int>(std::min<size_t>(micro_, seqs.size() - s0));
      std::vector<int32_t> tokens;
      for (int i = 0; i < b; ++i) tokens.insert(tokens.end(), seqs[s0 + i].begin(), seqs[s0 + i].end());
      DUET_CUDA_TRY(cudaMemcpyAsync(tokens_.get(), tokens.data(), tokens.size() * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, ctx().stream));
      DUET_TRY(model_->forward(ctx(), params_.get(), tokens_.get(), b, T_, /*for_backward=*/false));
      DUET_TRY(original_logits(ctx(), original_w_, tokens_.get(), b, T_, states_, forward_ws_, rstd_, xn_, target_));
      DUET_TRY(gpu::kl_forward(ctx(), target_.get(), model_->logits(), b * T_, c.vocab_size, losses_.get()));
      float kl = 0;
      DUET_CUDA_TRY(cudaMemcpy(&kl, losses_.get(), sizeof(float), cudaMemcpyDeviceToHost));
      total += static_cast<double>(kl) * b;
    }
    return total / static_cast<double>(seqs.size());
  }

  Status download_params() {
    std::vector<float> host(layout_.total);
    DUET_TRY(params_.download(host.data(), layout_.total));
    scatter_params(host.data(), layout_, lp_);
    return ok_status();
  }

  Status save(int stage, int64_t step) const {
    if (o_.checkpoint_path.empty()) return ok_status();
    Checkpoint c{o_.identity, stage, step, layout_, {}, {}, {}};
    for (auto [dst, src] : {std::pair{&c.params, &params_}, {&c.m, &m_}, {&c.v, &v_}}) {
      dst->resize(layout_.total);
      DUET_TRY(src->download(dst->data(), layout_.total));
    }
    return save_checkpoint(c, o_.checkpoint_path);
  }

  const ModelWeights& original_;
  ModelWeights& lp_;
  const TrainData& data_;
  const HealOptions& o_;
  const int micro_;
  ParamLayout layout_;
  int T_;
  std::vector<LocalPair> pairs_;
  int last_boundary_ = 0;  // the highest target boundary: the local stage runs the original up to it
  Context context_;
  gpu::DeviceWeights original_w_, lp_w_;  // what the current phase reads (enter)
  gpu::DeviceArray<float> params_, grads_, m_, v_;  // [layout_.total] each
  gpu::DeviceArray<int32_t> tokens_;                // [micro, T]
  gpu::DeviceArray<float> losses_, tnorms_;         // one slot per loss of a step
  gpu::DeviceArray<double> norm2_;                  // [1]
  std::vector<gpu::DeviceArray<float>> states_;     // the original's hidden states at the pairs' boundaries
  gpu::ForwardWorkspace forward_ws_;                // the original model's forwards
  gpu::DeviceArray<float> out_, dout_;              // [micro*T, D]
  gpu::LayerActs acts_;
  gpu::LayerScratch scratch_;
  std::unique_ptr<gpu::TrainModel> model_;  // the LP model, outside the local stage
  gpu::DeviceArray<float> rstd_, xn_, target_;  // the original's final norm and logits [micro*T, V]
};

}  // namespace

Status cuda_device_available() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    return make_error("duet heal --device cuda: no CUDA GPU is visible (", cudaGetErrorString(e),
                      "); use --device cpu");
  }
  return ok_status();
}

Result<HealResult> heal_cuda(const ModelWeights& original, ModelWeights& lp, const TrainData& data,
                             const HealOptions& o, const CudaHealOptions& co) {
  if (wide_layers(lp).empty()) return make_error("the LP plan has no pairs: there is nothing to heal");
  if (data.train.empty() || static_cast<int>(data.train.size()) < o.batch) {
    return make_error("healing needs at least one step: ", data.train.size(), " training sequences for a batch of ",
                      o.batch);
  }
  CudaHealer healer(original, lp, data, o, co);
  DUET_TRY(healer.init());
  return healer.run();
}

}  // namespace duet::train
