// The whole model on the GPU (train/model.cpp line for line).
#include "train/cuda/model.cuh"

#include <algorithm>

#include "core/check.h"
#include "kernels/ops.h"

namespace duet::train::cuda {
namespace {

int64_t gain_floats(const LayerWeights& w) { return static_cast<int64_t>(w.attn_norm.size() + w.ffn_norm.size()); }

int64_t layer_floats(const LayerWeights& w) {
  int64_t n = gain_floats(w) +
              static_cast<int64_t>(w.attn_q_bias.size() + w.attn_k_bias.size() + w.attn_v_bias.size());
  for (const Matrix* m : {&w.attn_q, &w.attn_k, &w.attn_v, &w.attn_q_norm, &w.attn_k_norm, &w.attn_out, &w.ffn_gate,
                          &w.ffn_up, &w.ffn_down}) {
    n += static_cast<int64_t>(m->data.size());
  }
  return n;
}

}  // namespace

WeightParts whole_model(const ModelWeights& w, const ParamLayout* trained) {
  WeightParts p{std::vector<LayerPart>(w.depth(), LayerPart::All), true};
  if (trained) {
    for (int l : trained->layers()) p.layers.at(l) = LayerPart::Gains;
  }
  return p;
}

WeightParts layers_below(const ModelWeights& w, int n) {
  DUET_CHECK(n >= 0 && n <= w.depth());
  WeightParts p{std::vector<LayerPart>(w.depth(), LayerPart::None), false};
  std::fill(p.layers.begin(), p.layers.begin() + n, LayerPart::All);
  return p;
}

WeightParts trained_gains(const ModelWeights& w, const ParamLayout& trained) {
  WeightParts p{std::vector<LayerPart>(w.depth(), LayerPart::None), false};
  for (int l : trained.layers()) p.layers.at(l) = LayerPart::Gains;
  return p;
}

const float* DeviceWeights::put(const float* data, int64_t n) {
  if (n == 0) return nullptr;
  float* dst = arena_.get() + used_;
  DUET_CHECK(used_ + n <= arena_.size());
  if (copy_error_ == cudaSuccess) copy_error_ = cudaMemcpy(dst, data, n * sizeof(float), cudaMemcpyHostToDevice);
  used_ += n;
  return dst;
}

void DeviceWeights::release() {
  cudaDeviceSynchronize();  // no kernel still reads the arena
  arena_.release();
  parts_ = {};
  layers_.clear();
  token_embd_ = output_ = output_norm_ = nullptr;
  rope_ = {};
}

Status DeviceWeights::upload(const ModelWeights& w, int positions, const WeightParts& parts) {
  DUET_CHECK(static_cast<int>(parts.layers.size()) == w.depth());
  release();
  host_ = &w;
  const ModelConfig& c = w.config;
  const int half = c.head_dim / 2;
  int64_t total = static_cast<int64_t>(w.token_embd.data.size()) + 2 * static_cast<int64_t>(positions) * half;
  if (parts.head) total += static_cast<int64_t>(w.output.data.size() + w.output_norm.size());
  for (int l = 0; l < w.depth(); ++l) {
    if (parts.layers[l] == LayerPart::Gains) total += gain_floats(w.layers[l]);
    if (parts.layers[l] == LayerPart::All) total += layer_floats(w.layers[l]);
  }
  DUET_TRY(arena_.reserve(total));
  used_ = 0;
  copy_error_ = cudaSuccess;
  token_embd_ = put(w.token_embd.data.data(), static_cast<int64_t>(w.token_embd.data.size()));
  if (parts.head) {
    output_ = w.output.empty() ? token_embd_ : put(w.output.data.data(), static_cast<int64_t>(w.output.data.size()));
    output_norm_ = put(w.output_norm.data(), static_cast<int64_t>(w.output_norm.size()));
  }
  std::vector<float> cos(static_cast<size_t>(positions) * half), sin(cos.size());
  cpu::rope_table_fill(c, positions, cos.data(), sin.data());
  rope_ = {c.head_dim, positions, c.rope_style, put(cos.data(), static_cast<int64_t>(cos.size())),
           put(sin.data(), static_cast<int64_t>(sin.size()))};
  layers_.assign(w.depth(), LayerSpec{});
  for (int i = 0; i < w.depth(); ++i) {
    if (parts.layers[i] == LayerPart::None) continue;
    const LayerWeights& l = w.layers[i];
    auto vec = [&](const std::vector<float>& v) { return put(v.data(), static_cast<int64_t>(v.size())); };
    auto mat = [&](const Matrix& m) { return put(m.data.data(), static_cast<int64_t>(m.data.size())); };
    LayerSpec& s = layers_[i];
    s = {l.n_heads, l.n_kv_heads, l.ffn_dim, vec(l.attn_norm), vec(l.ffn_norm), {}};
    if (parts.layers[i] == LayerPart::Gains) continue;
    s.w.attn_q = mat(l.attn_q);
    s.w.attn_k = mat(l.attn_k);
    s.w.attn_v = mat(l.attn_v);
    s.w.attn_q_bias = vec(l.attn_q_bias);
    s.w.attn_k_bias = vec(l.attn_k_bias);
    s.w.attn_v_bias = vec(l.attn_v_bias);
    s.w.attn_q_norm = mat(l.attn_q_norm);
    s.w.attn_k_norm = mat(l.attn_k_norm);
    s.w.attn_out = mat(l.attn_out);
    s.w.ffn_gate = mat(l.ffn_gate);
    s.w.ffn_up = mat(l.ffn_up);
    s.w.ffn_down = mat(l.ffn_down);
  }
  DUET_CHECK(used_ == total);
  DUET_CUDA_TRY(copy_error_);
  parts_ = parts;
  return ok_status();
}

LayerSpec DeviceWeights::layer(int l) const {
  DUET_CHECK(l >= 0 && l < static_cast<int>(parts_.layers.size()) && parts_.layers[l] == LayerPart::All);
  return layers_[l];
}

LayerSpec DeviceWeights::layer(int l, const ParamLayout& layout, const float* params) const {
  DUET_CHECK(l >= 0 && l < static_cast<int>(parts_.layers.size()) && parts_.layers[l] != LayerPart::None);
  LayerSpec s = layers_[l];
  // The gradient views' names and offsets are the parameters' (one layout); read only here.
  const LayerGrads v = layer_grads(layout, const_cast<float*>(params), l);
  s.w = {v.attn_q,      v.attn_k,      v.attn_v,   v.attn_q_bias, v.attn_k_bias, v.attn_v_bias,
         v.attn_q_norm, v.attn_k_norm, v.attn_out, v.ffn_gate,    v.ffn_up,      v.ffn_down};
  DUET_CHECK(s.w.attn_q && s.w.ffn_down);
  return s;
}

const float* DeviceWeights::output() const {
  DUET_CHECK(parts_.head);
  return output_;
}

const float* DeviceWeights::output_norm() const {
  DUET_CHECK(parts_.head);
  return output_norm_;
}

Status hidden_states(const TrainContext& ctx, const DeviceWeights& weights, const int32_t* tokens, int B, int T,
                     const std::vector<int>& boundaries, std::vector<DeviceArray<float>>& out, ForwardWorkspace& ws) {
  const ModelConfig& c = weights.host().config;
  const int64_t RD = static_cast<int64_t>(B) * T * c.dim;
  int last = 0;
  for (int b : boundaries) last = std::max(last, b);
  DUET_CHECK(last <= weights.host().depth());
  out.resize(boundaries.size());
  DeviceArray<float>& x = ws.x;
  DeviceArray<float>& y = ws.y;
  DUET_TRY(x.reserve(RD));
  DUET_TRY(y.reserve(RD));
  DUET_TRY(embedding_forward(ctx, tokens, weights.token_embd(), x.get(), B * T, c.dim));
  for (int l = 0;; ++l) {
    for (size_t i = 0; i < boundaries.size(); ++i) {
      if (boundaries[i] != l) continue;
      DUET_TRY(out[i].reserve(RD));
      DUET_CUDA_TRY(cudaMemcpyAsync(out[i].get(), x.get(), RD * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));
    }
    if (l == last) break;
    DUET_TRY(layer_forward(ctx, c, weights.rope(), weights.layer(l), x.get(), B, T, ws.acts, y.get()));
    std::swap(x, y);
  }
  return ok_status();
}

TrainModel::TrainModel(const DeviceWeights& weights, const ParamLayout& layout)
    : weights_(weights), layout_(layout), trained_(weights.host().depth(), false), acts_(weights.host().depth()),
      inputs_(weights.host().depth()) {
  const std::vector<int> layers = layout.layers();
  DUET_CHECK(!layers.empty());
  for (int l : layers) trained_[l] = true;
  first_trained_ = layers.front();
}

LayerSpec TrainModel::spec(const float* params, int l) const {
  return trained_[l] ? weights_.layer(l, layout_, params) : weights_.layer(l);
}

void TrainModel::set_recompute(bool on) {
  if (on == recompute_) return;
  cudaDeviceSynchronize();  // nothing in flight reads what is given back
  for (LayerActs& a : acts_) a = LayerActs{};
  for (DeviceArray<float>& x : inputs_) x.release();
  recompute_ = on;
  backward_ready_ = false;
}

int64_t TrainModel::saved_bytes(const float* params, int B, int T) const {
  int64_t n = 0;
  for (int l = first_trained_; l < weights_.host().depth(); ++l) {
    n += layer_activation_floats(weights_.host().config, spec(params, l), B, T);
  }
  return n * static_cast<int64_t>(sizeof(float));
}

int64_t TrainModel::recompute_bytes(const float* params, int B, int T) const {
  const int depth = weights_.host().depth();
  int64_t widest = 0;
  for (int l = first_trained_; l < depth; ++l) {
    widest = std::max(widest, layer_activation_floats(weights_.host().config, spec(params, l), B, T));
  }
  const int64_t inputs = static_cast<int64_t>(depth - first_trained_) * B * T * weights_.host().config.dim;
  return (inputs + widest) * static_cast<int64_t>(sizeof(float));  // the inputs and the one recomputed layer
}

int64_t held_floats(const LayerActs& a) {
  int64_t n = 0;
  for (const DeviceArray<float>* b : {&a.x, &a.rstd1, &a.xn1, &a.q_lin, &a.k_lin, &a.q_rstd, &a.k_rstd, &a.q, &a.k,
                                      &a.v, &a.att, &a.attn_y, &a.h, &a.rstd2, &a.xn2, &a.gate, &a.up, &a.act}) {
    n += b->size();
  }
  return n;
}

int64_t TrainModel::held_bytes() const {
  int64_t n = 0;
  for (const LayerActs& a : acts_) n += held_floats(a);
  for (const DeviceArray<float>& x : inputs_) n += x.size();
  return n * static_cast<int64_t>(sizeof(float));
}

Status TrainModel::forward(const TrainContext& ctx, const float* params, const int32_t* tokens, int B, int T,
                           bool for_backward) {
  const ModelConfig& c = weights_.host().config;
  const int R = B * T;
  const int64_t RD = static_cast<int64_t>(R) * c.dim, RV = static_cast<int64_t>(R) * c.vocab_size;
  B_ = B;
  T_ = T;
  backward_ready_ = false;
  for (DeviceArray<float>* buf : {&x_, &y_, &xn_, &dx_, &dprev_, &dxn_}) DUET_TRY(buf->reserve(RD));
  DUET_TRY(rstd_.reserve(R));
  DUET_TRY(logits_.reserve(RV));
  DUET_TRY(dlogits_.reserve(RV));
  DUET_TRY(embedding_forward(ctx, tokens, weights_.token_embd(), x_.get(), R, c.dim));
  for (int l = 0; l < weights_.host().depth(); ++l) {
    const bool kept = for_backward && l >= first_trained_;
    if (kept && recompute_) {
      DUET_TRY(inputs_[l].reserve(RD));
      DUET_CUDA_TRY(cudaMemcpyAsync(inputs_[l].get(), x_.get(), RD * sizeof(float), cudaMemcpyDeviceToDevice,
                                    ctx.stream));
    }
    LayerActs& acts = kept && !recompute_ ? acts_[l] : scratch_acts_;
    DUET_TRY(layer_forward(ctx, c, weights_.rope(), spec(params, l), x_.get(), B, T, acts, y_.get()));
    std::swap(x_, y_);
  }
  DUET_TRY(rms_norm_forward(ctx, x_.get(), weights_.output_norm(), xn_.get(), rstd_.get(), R, c.dim, c.rms_eps));
  DUET_TRY(matmul_forward(ctx, xn_.get(), weights_.output(), nullptr, logits_.get(), R, c.vocab_size, c.dim));
  DUET_TRY(dlogits_.zero(RV, ctx.stream));
  backward_ready_ = for_backward;
  return ok_status();
}

Status TrainModel::backward(const TrainContext& ctx, const float* params, float* grads) {
  DUET_CHECK(backward_ready_);
  const ModelConfig& c = weights_.host().config;
  const int R = B_ * T_;
  const int64_t RD = static_cast<int64_t>(R) * c.dim;
  DUET_TRY(dxn_.zero(RD, ctx.stream));
  DUET_TRY(dx_.zero(RD, ctx.stream));
  DUET_TRY(matmul_backward(ctx, dlogits_.get(), xn_.get(), weights_.output(), dxn_.get(), nullptr, nullptr, R,
                           c.vocab_size, c.dim));
  DUET_TRY(rms_norm_backward(ctx, dxn_.get(), x_.get(), weights_.output_norm(), rstd_.get(), dx_.get(), R, c.dim));
  for (int l = weights_.host().depth() - 1; l >= first_trained_; --l) {
    const LayerGrads g = trained_[l] ? layer_grads(layout_, grads, l) : LayerGrads{};
    const LayerSpec layer = spec(params, l);
    if (recompute_) {  // y_ is free here: the forward's last output is in x_, read above
      DUET_TRY(layer_forward(ctx, c, weights_.rope(), layer, inputs_[l].get(), B_, T_, scratch_acts_, y_.get()));
    }
    DUET_TRY(layer_backward(ctx, c, weights_.rope(), layer, recompute_ ? scratch_acts_ : acts_[l], dx_.get(),
                            l > first_trained_ ? dprev_.get() : nullptr, g, scratch_));
    std::swap(dx_, dprev_);
  }
  return ok_status();
}

}  // namespace duet::train::cuda
