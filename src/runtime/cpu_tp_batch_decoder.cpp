// The CPU BatchDecoder under tensor parallelism (batch_decoder.h): `tp` ranks
// as threads of this process, each a CpuModel on its shard with one KvCache per
// slot, joined by an InProcessGroup, as cpu_tp_decoder.cpp does for one
// sequence. Rank 0 runs on the caller's thread (the server's engine loop) and
// returns the logits; the others run on threads started for each step.
#include <omp.h>

#include <thread>

#include "model/tp_shard.h"
#include "parallel/in_process.h"
#include "runtime/batch_decoder.h"

namespace duet {
namespace {

class CpuTpBatchDecoder final : public BatchDecoder {
 public:
  CpuTpBatchDecoder(std::vector<ModelWeights> shards, int slots, int capacity, CpuArithmetic arithmetic)
      : shards_(std::move(shards)), group_(static_cast<int>(shards_.size())) {
    for (int r = 0; r < group_.size(); ++r) {
      models_.push_back(std::make_unique<CpuModel>(shards_[r], capacity, &group_.rank(r), arithmetic));
      caches_.emplace_back();
      for (int s = 0; s < slots; ++s) caches_[r].push_back(models_[r]->new_cache(capacity));
    }
  }

  int slots() const override { return static_cast<int>(caches_[0].size()); }
  int capacity() const override { return models_[0]->max_positions(); }
  int vocab_size() const override { return shards_[0].config.vocab_size; }
  std::string device_name() const override { return str_cat("cpu (tp ", group_.size(), ")"); }
  int length(int slot) const override { return caches_[0].at(slot).length; }
  void reset(int slot) override {
    for (std::vector<KvCache>& rank : caches_) rank.at(slot).clear();
  }

  Status prefill(int slot, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    if (slot < 0 || slot >= slots()) return make_error("slot ", slot, " is not one of the ", slots(), " slots");
    return on_ranks(logits, [&](int r, std::vector<float>& out) {
      return models_[r]->forward(tokens, T, caches_[r][slot], mode, out);
    });
  }

  Status decode(const int32_t* slot_ids, const int32_t* tokens, int B, std::vector<float>& logits) override {
    for (int b = 0; b < B; ++b) {
      if (slot_ids[b] < 0 || slot_ids[b] >= slots()) return make_error("slot ", slot_ids[b], " is not one of the ", slots(), " slots");
    }
    return on_ranks(logits, [&](int r, std::vector<float>& out) {
      std::vector<KvCache*> caches(B);
      for (int b = 0; b < B; ++b) caches[b] = &caches_[r][slot_ids[b]];
      return models_[r]->decode_batch(tokens, B, caches.data(), out);
    });
  }

 private:
  // Runs step(r, logits of r) on every rank at once: rank 0 here, into `logits`. Every rank validates
  // the same input before its first collective, so they fail (or not) together.
  template <class Step>
  Status on_ranks(std::vector<float>& logits, Step step) {
    const int tp = group_.size();
    // The ranks share the cores: each runs its OpenMP regions on its part of them.
    const int caller_threads = omp_get_max_threads();
    const int per_rank = std::max(1, caller_threads / tp);
    std::vector<Status> status(tp);
    std::vector<std::vector<float>> follower_logits(tp);
    std::vector<std::thread> followers;
    for (int r = 1; r < tp; ++r) {
      followers.emplace_back([&, r] {
        omp_set_num_threads(per_rank);
        status[r] = step(r, follower_logits[r]);
      });
    }
    omp_set_num_threads(per_rank);
    status[0] = step(0, logits);
    omp_set_num_threads(caller_threads);
    for (std::thread& t : followers) t.join();
    for (const Status& s : status) DUET_TRY(s);
    return ok_status();
  }

  std::vector<ModelWeights> shards_;  // [tp]
  InProcessGroup group_;
  std::vector<std::unique_ptr<CpuModel>> models_;  // [tp]
  std::vector<std::vector<KvCache>> caches_;       // [tp][slots]
};

}  // namespace

Result<std::unique_ptr<BatchDecoder>> make_cpu_tp_batch_decoder(const ModelWeights& weights, int slots, int capacity,
                                                                int tp, CpuArithmetic arithmetic) {
  DUET_TRY(check_tensor_parallel(weights, tp));
  std::vector<ModelWeights> shards;
  for (int r = 0; r < tp; ++r) {
    DUET_ASSIGN_OR_RETURN(ModelWeights shard, shard_weights(weights, r, tp));
    shards.push_back(std::move(shard));
  }
  return std::unique_ptr<BatchDecoder>(std::make_unique<CpuTpBatchDecoder>(std::move(shards), slots, capacity, arithmetic));
}

}  // namespace duet
