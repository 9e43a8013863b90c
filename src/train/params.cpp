#include "train/params.h"

#include <cstring>

#include "core/check.h"

namespace duet::train {
namespace {

// Calls fn(name, data, shape) for every trainable tensor of a layer (const
// or not), in the order of LayerWeights; optional tensors only when present.
template <class Layer, class Fn>
void for_each_tensor(Layer& w, Fn fn) {
  auto matrix = [&](const char* name, auto& m) {
    if (!m.empty()) fn(name, m.data, std::vector<int64_t>{m.rows, m.cols});
  };
  auto vec = [&](const char* name, auto& v) {
    if (!v.empty()) fn(name, v, std::vector<int64_t>{static_cast<int64_t>(v.size())});
  };
  matrix("attn_q", w.attn_q);
  matrix("attn_k", w.attn_k);
  matrix("attn_v", w.attn_v);
  vec("attn_q_bias", w.attn_q_bias);
  vec("attn_k_bias", w.attn_k_bias);
  vec("attn_v_bias", w.attn_v_bias);
  matrix("attn_q_norm", w.attn_q_norm);
  matrix("attn_k_norm", w.attn_k_norm);
  matrix("attn_output", w.attn_out);
  matrix("ffn_gate", w.ffn_gate);
  matrix("ffn_up", w.ffn_up);
  matrix("ffn_down", w.ffn_down);
}

// "blk.7.ffn_up" -> "ffn_up".
std::string short_name(const std::string& name) { return name.substr(name.find('.', 4) + 1); }

}  // namespace

int64_t ParamTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const ParamTensor* ParamLayout::find(const std::string& name) const {
  for (const ParamTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::vector<int> ParamLayout::layers() const {
  std::vector<int> out;
  for (const ParamTensor& t : tensors) {
    if (out.empty() || out.back() != t.layer) out.push_back(t.layer);
  }
  return out;
}

ParamLayout param_layout(const ModelWeights& weights, const std::vector<int>& layers) {
  ParamLayout layout;
  for (int l : layers) {
    DUET_CHECK(l >= 0 && l < weights.depth());
    for_each_tensor(weights.layers[l], [&](const char* name, const std::vector<float>& data, std::vector<int64_t> shape) {
      ParamTensor t{"blk." + std::to_string(l) + "." + name, l, layout.total, std::move(shape)};
      DUET_CHECK(t.numel() == static_cast<int64_t>(data.size()));
      layout.total += t.numel();
      layout.tensors.push_back(std::move(t));
    });
  }
  return layout;
}

std::vector<int> wide_layers(const ModelWeights& weights) {
  std::vector<int> out;
  for (int l = 0; l < weights.depth(); ++l) {
    if (weights.layers[l].source_layers.size() == 2) out.push_back(l);
  }
  return out;
}

void gather_params(const ModelWeights& weights, const ParamLayout& layout, float* flat) {
  for (const ParamTensor& t : layout.tensors) {
    const std::string suffix = short_name(t.name);
    for_each_tensor(weights.layers[t.layer], [&](const char* name, const std::vector<float>& data, const auto&) {
      if (suffix == name) std::memcpy(flat + t.offset, data.data(), data.size() * sizeof(float));
    });
  }
}

void scatter_params(const float* flat, const ParamLayout& layout, ModelWeights& weights) {
  for (const ParamTensor& t : layout.tensors) {
    const std::string suffix = short_name(t.name);
    for_each_tensor(weights.layers[t.layer], [&](const char* name, std::vector<float>& data, const auto&) {
      if (suffix == name) std::memcpy(data.data(), flat + t.offset, data.size() * sizeof(float));
    });
  }
  for (int l : layout.layers()) {
    LayerWeights& w = weights.layers[l];
    for (Matrix* m : {&w.attn_q, &w.attn_k, &w.attn_v, &w.attn_out, &w.ffn_gate, &w.ffn_up, &w.ffn_down}) {
      m->packed = PackedRows{};
    }
    w.attn_packed_gains = Matrix{};
    w.ffn_packed_gains = Matrix{};
  }
}

}  // namespace duet::train
