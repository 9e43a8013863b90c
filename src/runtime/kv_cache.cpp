#include "runtime/kv_cache.h"

namespace duet {

KvCache KvCache::for_model(const ModelWeights& weights, int capacity) {
  KvCache cache;
  cache.capacity = capacity;
  for (const LayerWeights& layer : weights.layers) {
    const size_t n = static_cast<size_t>(capacity) * layer.n_kv_heads * weights.config.head_dim;
    cache.layers.push_back({std::vector<float>(n), std::vector<float>(n)});
  }
  return cache;
}

}  // namespace duet
