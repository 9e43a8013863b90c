// The CPU Decoder: CpuModel plus one KvCache.
#include "runtime/decoder.h"

namespace duet {
namespace {

class CpuDecoder final : public Decoder {
 public:
  CpuDecoder(const ModelWeights& weights, int capacity, CpuArithmetic arithmetic)
      : model_(weights, capacity, nullptr, arithmetic), cache_(model_.new_cache(capacity)) {}

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    return model_.forward(tokens, T, cache_, mode, logits);
  }
  void reset() override { cache_.clear(); }
  int position() const override { return cache_.length; }
  int capacity() const override { return cache_.capacity; }
  int vocab_size() const override { return model_.config().vocab_size; }
  std::string device_name() const override { return "cpu"; }

 private:
  CpuModel model_;
  KvCache cache_;
};

}  // namespace

std::unique_ptr<Decoder> make_cpu_decoder(const ModelWeights& weights, int capacity, CpuArithmetic arithmetic) {
  return std::make_unique<CpuDecoder>(weights, capacity, arithmetic);
}

}  // namespace duet
