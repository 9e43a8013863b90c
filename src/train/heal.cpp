#include "train/heal.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#include "backends/cpu/cpu_model.h"
#include "core/check.h"
#include "train/checkpoint.h"
#include "train/losses.h"
#include "train/model.h"

namespace duet::train {
namespace {

using Clock = std::chrono::steady_clock;

// One LP pair as the local stage sees it: wide layer `layer` of the LP model computes original layers
// (i, i+1), so its input is the original hidden state entering layer i and its target the one leaving i+1.
struct LocalPair {
  int layer = 0;
  int input_boundary = 0;   // i
  int target_boundary = 0;  // i + 2
};

class Healer {
 public:
  Healer(const ModelWeights& original, ModelWeights& lp, const TrainData& data, const HealOptions& o)
      : original_(original), lp_(lp), data_(data), o_(o), layout_(param_layout(lp, wide_layers(lp))),
        T_(static_cast<int>(data.train.front().size())), rope_(lp.config, T_) {
    params_.resize(layout_.total);
    grads_.resize(layout_.total);
    m_.resize(layout_.total);
    v_.resize(layout_.total);
    gather_params(lp, layout_, params_.data());
    for (int l : layout_.layers()) {
      const std::vector<int>& src = lp.layers[l].source_layers;
      pairs_.push_back({l, src.front(), src.back() + 1});
    }
  }

  Result<HealResult> run() {
    HealResult result;
    result.recomputed = o_.recompute == Recompute::On &&
                        std::any_of(o_.stages.begin(), o_.stages.end(), [](Stage s) { return s != Stage::Local; });
    DUET_ASSIGN_OR_RETURN(result.kl_before, mean_kl(original_, lp_, data_.heldout));
    int first_stage = 0;
    int64_t first_step = 0;
    if (o_.resume) {
      DUET_ASSIGN_OR_RETURN(Checkpoint c, load_resume_checkpoint(o_));
      DUET_TRY(check_resumable(c, layout_, o_));
      params_ = std::move(c.params);
      m_ = std::move(c.m);
      v_ = std::move(c.v);
      first_stage = c.stage;
      first_step = c.step;
    }
    int64_t run_steps = 0;
    for (int s = first_stage; s < static_cast<int>(o_.stages.size()); ++s) {
      const Stage stage = o_.stages[s];
      const int64_t steps = static_cast<int64_t>(data_.train.size()) / o_.batch;
      const int64_t warmup = std::max<int64_t>(1, static_cast<int64_t>(o_.warmup * steps));
      const int64_t step0 = s == first_stage ? first_step : 0;
      if (step0 == 0) {  // a fresh optimizer per stage: the objective changes
        std::fill(m_.begin(), m_.end(), 0.0f);
        std::fill(v_.begin(), v_.end(), 0.0f);
      }
      const std::vector<size_t> order = sequence_order(s);
      StageSummary summary{stage, steps, 0, 0};
      const auto stage_start = Clock::now();
      for (int64_t step = step0; step < steps; ++step) {
        std::fill(grads_.begin(), grads_.end(), 0.0f);
        double loss = 0;
        for (int b = 0; b < o_.batch; ++b) {
          const std::vector<int32_t>& tokens = data_.train[order[step * o_.batch + b]];
          loss += accumulate(stage, tokens, 1.0f / o_.batch);
        }
        loss /= o_.batch;
        const double norm = clip_grad_norm(grads_.data(), layout_.total, o_.clip);
        const float lr = lr_at(step, steps, warmup, o_.lr, o_.min_lr_ratio);
        adamw_update(params_.data(), grads_.data(), m_.data(), v_.data(), layout_.total, step + 1, lr, o_.adamw);
        ++run_steps;
        result.tokens_trained += static_cast<int64_t>(o_.batch) * T_;
        if (step == step0) summary.first_loss = static_cast<float>(loss);
        summary.last_loss = static_cast<float>(loss);
        if (o_.on_step) {
          const double seconds = std::chrono::duration<double>(Clock::now() - stage_start).count();
          const int64_t done = step + 1 - step0;
          o_.on_step({stage, step + 1, steps, static_cast<float>(loss), lr, norm,
                      done * o_.batch * T_ / std::max(seconds, 1e-9), seconds / done * (steps - step - 1)});
        }
        const bool stop = o_.max_steps > 0 && run_steps >= o_.max_steps && step + 1 < steps;
        if (stop || (o_.save_every > 0 && (step + 1) % o_.save_every == 0 && step + 1 < steps)) {
          DUET_TRY(save(s, step + 1));
        }
        if (stop) {
          result.stages.push_back(summary);
          scatter_params(params_.data(), layout_, lp_);
          return result;
        }
      }
      result.stages.push_back(summary);
      DUET_TRY(save(s + 1, 0));
    }
    scatter_params(params_.data(), layout_, lp_);
    result.finished = true;
    DUET_ASSIGN_OR_RETURN(result.kl_after, mean_kl(original_, lp_, data_.heldout));
    return result;
  }

 private:
  // The order of the training sequences in stage s: a seeded shuffle, the same on every resume.
  std::vector<size_t> sequence_order(int s) const {
    std::vector<size_t> order(data_.train.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(o_.seed * 1000003 + static_cast<uint64_t>(s));
    std::shuffle(order.begin(), order.end(), rng);
    return order;
  }

  // Adds scale * d(loss)/d(params) of one sequence to grads_; returns its loss.
  double accumulate(Stage stage, const std::vector<int32_t>& tokens, float scale) {
    const int T = static_cast<int>(tokens.size());
    if (stage == Stage::Local) return accumulate_local(tokens.data(), T, scale);
    if (!model_) model_ = std::make_unique<TrainModel>(lp_, layout_, T_, o_.recompute == Recompute::On);
    model_->forward(params_.data(), tokens.data(), T, logits_);
    dlogits_.assign(logits_.size(), 0.0f);
    const int V = lp_.config.vocab_size;
    double loss = 0;
    if (stage == Stage::Global) {
      original_logits(tokens.data(), T);
      loss = kl_forward(target_.data(), logits_.data(), T, V);
      kl_backward(target_.data(), logits_.data(), T, V, scale, dlogits_.data());
    } else {
      loss = cross_entropy_forward(logits_.data(), tokens.data(), T, V);
      cross_entropy_backward(logits_.data(), tokens.data(), T, V, scale, dlogits_.data());
    }
    model_->backward(params_.data(), dlogits_.data(), grads_.data());
    return loss;
  }

  double accumulate_local(const int32_t* tokens, int T, float scale) {
    std::vector<int> boundaries;
    for (const LocalPair& p : pairs_) {
      boundaries.push_back(p.input_boundary);
      boundaries.push_back(p.target_boundary);
    }
    const std::vector<std::vector<float>> states = hidden_states(original_, rope_, tokens, T, boundaries);
    const int64_t TD = static_cast<int64_t>(T) * lp_.config.dim;
    std::vector<float> out(TD), dout(TD);
    double loss = 0;
    for (size_t k = 0; k < pairs_.size(); ++k) {
      const int l = pairs_[k].layer;
      const LayerSpec spec = layer_spec(lp_.layers[l], layout_, params_.data(), l);
      const std::vector<float>& x = states[2 * k];
      const std::vector<float>& target = states[2 * k + 1];
      layer_forward(lp_.config, rope_.table(), spec, x.data(), T, acts_, out.data());
      loss += mse_forward(out.data(), target.data(), TD);
      std::fill(dout.begin(), dout.end(), 0.0f);
      mse_backward(out.data(), target.data(), TD, scale, dout.data());
      layer_backward(lp_.config, rope_.table(), spec, acts_, dout.data(), nullptr, layer_grads(layout_, grads_.data(), l));
    }
    return loss / static_cast<double>(pairs_.size());
  }

  // target_ <- the original model's logits [T, V] for tokens.
  void original_logits(const int32_t* tokens, int T) {
    if (!original_model_) original_model_ = std::make_unique<CpuModel>(original_, T_);
    KvCache cache = original_model_->new_cache(T);
    const Status st = original_model_->forward(tokens, T, cache, LogitsMode::All, target_);
    DUET_CHECK(st.ok());  // tokens and length were validated when the data was built
  }

  Status save(int stage, int64_t step) const {
    if (o_.checkpoint_path.empty()) return ok_status();
    return save_checkpoint({o_.identity, stage, step, layout_, params_, m_, v_}, o_.checkpoint_path);
  }

  const ModelWeights& original_;
  ModelWeights& lp_;
  const TrainData& data_;
  const HealOptions& o_;
  ParamLayout layout_;
  int T_;
  RopeBuffers rope_;
  std::vector<LocalPair> pairs_;
  std::vector<float> params_, grads_, m_, v_;  // [layout_.total] each
  LayerActs acts_;
  std::unique_ptr<TrainModel> model_;
  std::unique_ptr<CpuModel> original_model_;
  std::vector<float> logits_, dlogits_, target_;  // [T, V]
};

}  // namespace

const char* stage_name(Stage stage) {
  switch (stage) {
    case Stage::Local: return "local";
    case Stage::Global: return "global";
    case Stage::Lm: return "lm";
  }
  return "?";
}

Result<std::vector<Stage>> parse_stages(const std::string& text) {
  std::vector<Stage> stages;
  std::stringstream in(text);
  std::string name;
  while (std::getline(in, name, ',')) {
    Stage s;
    if (name == "local") s = Stage::Local;
    else if (name == "global") s = Stage::Global;
    else if (name == "lm") s = Stage::Lm;
    else return make_error("unknown stage '", name, "' in --stage ", text, " (expected local, global or lm)");
    if (std::find(stages.begin(), stages.end(), s) != stages.end()) {
      return make_error("stage '", name, "' appears twice in --stage ", text);
    }
    stages.push_back(s);
  }
  if (stages.empty()) return make_error("--stage is empty (expected e.g. local,global)");
  return stages;
}

Result<Checkpoint> load_resume_checkpoint(const HealOptions& o) {
  if (o.checkpoint_path.empty()) return make_error("--resume needs a checkpoint path");
  DUET_ASSIGN_OR_RETURN(Checkpoint c, load_checkpoint(o.checkpoint_path));
  if (c.identity != o.identity) {
    return make_error("checkpoint ", o.checkpoint_path, " belongs to another run (", c.identity, "); this run is ",
                      o.identity, "; delete it or run without --resume");
  }
  return c;
}

Status check_resumable(const Checkpoint& c, const ParamLayout& layout, const HealOptions& o) {
  bool same = c.layout.total == layout.total && c.layout.tensors.size() == layout.tensors.size();
  for (size_t i = 0; same && i < layout.tensors.size(); ++i) {
    same = c.layout.tensors[i].name == layout.tensors[i].name && c.layout.tensors[i].shape == layout.tensors[i].shape &&
           c.layout.tensors[i].offset == layout.tensors[i].offset;
  }
  if (!same) return make_error("checkpoint ", o.checkpoint_path, " holds other tensors than this model's wide layers");
  if (c.stage < 0 || c.stage > static_cast<int>(o.stages.size()) || c.step < 0) {
    return make_error("checkpoint ", o.checkpoint_path, " is at stage ", c.stage, " step ", c.step, ", outside this run");
  }
  return ok_status();
}

Result<HealResult> heal(const ModelWeights& original, ModelWeights& lp, const TrainData& data, const HealOptions& o) {
  if (wide_layers(lp).empty()) return make_error("the LP plan has no pairs: there is nothing to heal");
  if (data.train.empty() || static_cast<int>(data.train.size()) < o.batch) {
    return make_error("healing needs at least one step: ", data.train.size(), " training sequences for a batch of ",
                      o.batch);
  }
  return Healer(original, lp, data, o).run();
}

Result<double> mean_kl(const ModelWeights& p, const ModelWeights& q, const std::vector<std::vector<int32_t>>& sequences) {
  if (sequences.empty()) return 0.0;
  const int T = static_cast<int>(sequences.front().size());
  const CpuModel mp(p, T), mq(q, T);
  std::vector<float> lp, lq;
  double total = 0;
  for (const std::vector<int32_t>& s : sequences) {
    KvCache cp = mp.new_cache(T), cq = mq.new_cache(T);
    DUET_TRY(mp.forward(s.data(), T, cp, LogitsMode::All, lp));
    DUET_TRY(mq.forward(s.data(), T, cq, LogitsMode::All, lq));
    total += kl_forward(lp.data(), lq.data(), T, p.config.vocab_size);
  }
  return total / static_cast<double>(sequences.size());
}

}  // namespace duet::train
