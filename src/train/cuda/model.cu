// The whole model on the GPU (train/model.cpp line for line).
#include "train/cuda/model.cuh"

#include <algorithm>

#include "core/check.h"
#include "kernels/ops.h"

namespace duet::train::cuda {
namespace {

int64_t layer_floats(const LayerWeights& w) {
  int64_t n = static_cast<int64_t>(w.attn_norm.size() + w.ffn_norm.size() + w.attn_q_bias.size() +
                                   w.attn_k_bias.size() + w.attn_v_bias.size());
  for (const Matrix* m : {&w.attn_q, &w.attn_k, &w.attn_v, &w.attn_q_norm, &w.attn_k_norm, &w.attn_out, &w.ffn_gate,
                          &w.ffn_up, &w.ffn_down}) {
    n += static_cast<int64_t>(m->data.size());
  }
  return n;
}

}  // namespace

const float* DeviceWeights::put(const float* data, int64_t n) {
  if (n == 0) return nullptr;
  float* dst = arena_.get() + used_;
  DUET_CHECK(used_ + n <= arena_.size());
  if (copy_error_ == cudaSuccess) copy_error_ = cudaMemcpy(dst, data, n * sizeof(float), cudaMemcpyHostToDevice);
  used_ += n;
  return dst;
}

Status DeviceWeights::upload(const ModelWeights& w, int positions) {
  host_ = &w;
  const ModelConfig& c = w.config;
  const int half = c.head_dim / 2;
  int64_t total = static_cast<int64_t>(w.token_embd.data.size() + w.output.data.size() + w.output_norm.size()) +
                  2 * static_cast<int64_t>(positions) * half;
  for (const LayerWeights& l : w.layers) total += layer_floats(l);
  DUET_TRY(arena_.reserve(total));
  used_ = 0;
  token_embd_ = put(w.token_embd.data.data(), static_cast<int64_t>(w.token_embd.data.size()));
  output_ = w.output.empty() ? token_embd_ : put(w.output.data.data(), static_cast<int64_t>(w.output.data.size()));
  output_norm_ = put(w.output_norm.data(), static_cast<int64_t>(w.output_norm.size()));
  std::vector<float> cos(static_cast<size_t>(positions) * half), sin(cos.size());
  cpu::rope_table_fill(c, positions, cos.data(), sin.data());
  rope_ = {c.head_dim, positions, c.rope_style, put(cos.data(), static_cast<int64_t>(cos.size())),
           put(sin.data(), static_cast<int64_t>(sin.size()))};
  layers_.clear();
  for (const LayerWeights& l : w.layers) {
    auto vec = [&](const std::vector<float>& v) { return put(v.data(), static_cast<int64_t>(v.size())); };
    auto mat = [&](const Matrix& m) { return put(m.data.data(), static_cast<int64_t>(m.data.size())); };
    LayerSpec s{l.n_heads, l.n_kv_heads, l.ffn_dim, vec(l.attn_norm), vec(l.ffn_norm), {}};
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
    layers_.push_back(s);
  }
  DUET_CUDA_TRY(copy_error_);
  return ok_status();
}

LayerSpec DeviceWeights::layer(int l) const { return layers_.at(l); }

LayerSpec DeviceWeights::layer(int l, const ParamLayout& layout, const float* params) const {
  LayerSpec s = layers_.at(l);
  // The gradient views' names and offsets are the parameters' (one layout); read only here.
  const LayerGrads v = layer_grads(layout, const_cast<float*>(params), l);
  s.w = {v.attn_q,      v.attn_k,      v.attn_v,   v.attn_q_bias, v.attn_k_bias, v.attn_v_bias,
         v.attn_q_norm, v.attn_k_norm, v.attn_out, v.ffn_gate,    v.ffn_up,      v.ffn_down};
  DUET_CHECK(s.w.attn_q && s.w.ffn_down);
  return s;
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
    : weights_(weights), layout_(layout), trained_(weights.host().depth(), false), acts_(weights.host().depth()) {
  const std::vector<int> layers = layout.layers();
  DUET_CHECK(!layers.empty());
  for (int l : layers) trained_[l] = true;
  first_trained_ = layers.front();
}

LayerSpec TrainModel::spec(const float* params, int l) const {
  return trained_[l] ? weights_.layer(l, layout_, params) : weights_.layer(l);
}

Status TrainModel::forward(const TrainContext& ctx, const float* params, const int32_t* tokens, int B, int T) {
  const ModelConfig& c = weights_.host().config;
  const int R = B * T;
  const int64_t RD = static_cast<int64_t>(R) * c.dim, RV = static_cast<int64_t>(R) * c.vocab_size;
  B_ = B;
  T_ = T;
  for (DeviceArray<float>* buf : {&x_, &y_, &xn_, &dx_, &dprev_, &dxn_}) DUET_TRY(buf->reserve(RD));
  DUET_TRY(rstd_.reserve(R));
  DUET_TRY(logits_.reserve(RV));
  DUET_TRY(dlogits_.reserve(RV));
  DUET_TRY(embedding_forward(ctx, tokens, weights_.token_embd(), x_.get(), R, c.dim));
  for (int l = 0; l < weights_.host().depth(); ++l) {
    LayerActs& acts = l >= first_trained_ ? acts_[l] : scratch_acts_;
    DUET_TRY(layer_forward(ctx, c, weights_.rope(), spec(params, l), x_.get(), B, T, acts, y_.get()));
    std::swap(x_, y_);
  }
  DUET_TRY(rms_norm_forward(ctx, x_.get(), weights_.output_norm(), xn_.get(), rstd_.get(), R, c.dim, c.rms_eps));
  DUET_TRY(matmul_forward(ctx, xn_.get(), weights_.output(), nullptr, logits_.get(), R, c.vocab_size, c.dim));
  DUET_TRY(dlogits_.zero(RV, ctx.stream));
  return ok_status();
}

Status TrainModel::backward(const TrainContext& ctx, const float* params, float* grads) {
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
    DUET_TRY(layer_backward(ctx, c, weights_.rope(), spec(params, l), acts_[l], dx_.get(),
                            l > first_trained_ ? dprev_.get() : nullptr, g, scratch_));
    std::swap(dx_, dprev_);
  }
  return ok_status();
}

}  // namespace duet::train::cuda
