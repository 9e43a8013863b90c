#include "train/model.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace duet::train {
namespace {

void embed(const ModelWeights& w, const int32_t* tokens, int T, float* x) {
  const int D = w.config.dim;
  for (int t = 0; t < T; ++t) std::memcpy(x + static_cast<int64_t>(t) * D, w.token_embd.row(tokens[t]), D * sizeof(float));
}

}  // namespace

RopeBuffers::RopeBuffers(const ModelConfig& config, int positions)
    : head_dim(config.head_dim), positions(positions), style(config.rope_style) {
  cos.resize(static_cast<size_t>(positions) * (head_dim / 2));
  sin.resize(cos.size());
  cpu::rope_table_fill(config, positions, cos.data(), sin.data());
}

cpu::RopeTable RopeBuffers::table() const { return {head_dim, positions, style, cos.data(), sin.data()}; }

std::vector<std::vector<float>> hidden_states(const ModelWeights& weights, const RopeBuffers& rope,
                                              const int32_t* tokens, int T, const std::vector<int>& boundaries) {
  const int64_t TD = static_cast<int64_t>(T) * weights.config.dim;
  const int last = boundaries.empty() ? 0 : *std::max_element(boundaries.begin(), boundaries.end());
  DUET_CHECK(last <= weights.depth());
  std::vector<std::vector<float>> out(boundaries.size());
  std::vector<float> x(TD), y(TD);
  LayerActs scratch;
  embed(weights, tokens, T, x.data());
  for (int l = 0;; ++l) {
    for (size_t i = 0; i < boundaries.size(); ++i) {
      if (boundaries[i] == l) out[i] = x;
    }
    if (l == last) break;
    layer_forward(weights.config, rope.table(), layer_spec(weights.layers[l]), x.data(), T, scratch, y.data());
    x.swap(y);
  }
  return out;
}

TrainModel::TrainModel(const ModelWeights& weights, const ParamLayout& layout, int max_tokens, bool recompute)
    : weights_(weights), layout_(layout), rope_(weights.config, max_tokens), trained_(weights.depth(), false),
      recompute_(recompute), acts_(recompute ? 0 : weights.depth()), inputs_(recompute ? weights.depth() : 0) {
  const std::vector<int> layers = layout.layers();
  DUET_CHECK(!layers.empty());
  for (int l : layers) trained_[l] = true;
  first_trained_ = layers.front();
}

LayerSpec TrainModel::spec(const float* params, int l) const {
  return trained_[l] ? layer_spec(weights_.layers[l], layout_, params, l) : layer_spec(weights_.layers[l]);
}

void TrainModel::forward(const float* params, const int32_t* tokens, int T, std::vector<float>& logits) {
  const ModelConfig& c = weights_.config;
  const int64_t TD = static_cast<int64_t>(T) * c.dim;
  T_ = T;
  x_.resize(TD);
  std::vector<float> y(TD);
  embed(weights_, tokens, T, x_.data());
  for (int l = 0; l < weights_.depth(); ++l) {
    const bool saved = l >= first_trained_ && !recompute_;
    if (l >= first_trained_ && recompute_) inputs_[l].assign(x_.begin(), x_.end());
    layer_forward(c, rope_.table(), spec(params, l), x_.data(), T, saved ? acts_[l] : scratch_, y.data());
    x_.swap(y);
  }
  rstd_.resize(T);
  xn_.resize(TD);
  rms_norm_forward(x_.data(), weights_.output_norm.data(), xn_.data(), rstd_.data(), T, c.dim, c.rms_eps);
  logits.resize(static_cast<size_t>(T) * c.vocab_size);
  matmul_forward(xn_.data(), weights_.output_matrix().data.data(), nullptr, logits.data(), T, c.vocab_size, c.dim);
}

void TrainModel::backward(const float* params, const float* dlogits, float* grads) {
  const ModelConfig& c = weights_.config;
  const int T = T_;
  const int64_t TD = static_cast<int64_t>(T) * c.dim;
  std::vector<float> dxn(TD, 0.0f), dx(TD, 0.0f), dprev(TD), y(recompute_ ? TD : 0);
  matmul_backward(dlogits, xn_.data(), weights_.output_matrix().data.data(), dxn.data(), nullptr, nullptr, T,
                  c.vocab_size, c.dim);
  rms_norm_backward(dxn.data(), x_.data(), weights_.output_norm.data(), rstd_.data(), dx.data(), T, c.dim);
  for (int l = weights_.depth() - 1; l >= first_trained_; --l) {
    const LayerGrads g = trained_[l] ? layer_grads(layout_, grads, l) : LayerGrads{};
    const LayerSpec layer = spec(params, l);
    if (recompute_) layer_forward(c, rope_.table(), layer, inputs_[l].data(), T, scratch_, y.data());
    layer_backward(c, rope_.table(), layer, recompute_ ? scratch_ : acts_[l], dx.data(),
                   l > first_trained_ ? dprev.data() : nullptr, g);
    dx.swap(dprev);
  }
}

}  // namespace duet::train
