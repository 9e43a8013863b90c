// The CPU BatchDecoder: CpuModel plus one KvCache per slot.
#include "runtime/batch_decoder.h"

namespace duet {
namespace {

class CpuBatchDecoder final : public BatchDecoder {
 public:
  CpuBatchDecoder(const ModelWeights& weights, int slots, int capacity, CpuArithmetic arithmetic)
      : model_(weights, capacity, nullptr, arithmetic) {
    for (int s = 0; s < slots; ++s) caches_.push_back(model_.new_cache(capacity));
  }

  int slots() const override { return static_cast<int>(caches_.size()); }
  int capacity() const override { return model_.max_positions(); }
  int vocab_size() const override { return model_.config().vocab_size; }
  std::string device_name() const override { return "cpu"; }
  int length(int slot) const override { return caches_.at(slot).length; }
  void reset(int slot) override { caches_.at(slot).clear(); }

  Status prefill(int slot, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    return model_.forward(tokens, T, caches_.at(slot), mode, logits);
  }

  Status decode(const int32_t* slot_ids, const int32_t* tokens, int B, std::vector<float>& logits) override {
    std::vector<KvCache*> caches(B);
    for (int b = 0; b < B; ++b) caches[b] = &caches_.at(slot_ids[b]);
    return model_.decode_batch(tokens, B, caches.data(), logits);
  }

 private:
  CpuModel model_;
  std::vector<KvCache> caches_;
};

}  // namespace

std::unique_ptr<BatchDecoder> make_cpu_batch_decoder(const ModelWeights& weights, int slots, int capacity,
                                                     CpuArithmetic arithmetic) {
  return std::make_unique<CpuBatchDecoder>(weights, slots, capacity, arithmetic);
}

}  // namespace duet
