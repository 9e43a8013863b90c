// KvCache: per-layer keys and values of one sequence, sized at creation.
// A wide LP layer has 2Hkv KV heads, so the total size is the same as the
// baseline's; only the number of layers changes.
#pragma once

#include <vector>

#include "model/weights.h"

namespace duet {

struct LayerCache {
  std::vector<float> k;  // [S, Hkv, Dh] for this layer's Hkv
  std::vector<float> v;  // [S, Hkv, Dh]
};

struct KvCache {
  int capacity = 0;  // S: positions it can hold
  int length = 0;    // positions filled
  std::vector<LayerCache> layers;

  static KvCache for_model(const ModelWeights& weights, int capacity);
  void clear() { length = 0; }
};

}  // namespace duet
