// The CPU Decoder under tensor parallelism: `tp` ranks as threads of this
// process, each a CpuModel on its shard (model/tp_shard.h) with its own KV
// cache, joined by an InProcessGroup. Rank 0 runs on the caller's thread and
// returns the logits; the others run on threads started for each forward.
// make_cpu_tp_rank_decoder is one such rank when the ranks are processes.
#include <omp.h>

#include <thread>

#include "model/tp_shard.h"
#include "parallel/in_process.h"
#include "runtime/decoder.h"

namespace duet {
namespace {

class CpuTpDecoder final : public Decoder {
 public:
  CpuTpDecoder(std::vector<ModelWeights> shards, int capacity, CpuArithmetic arithmetic)
      : shards_(std::move(shards)), group_(static_cast<int>(shards_.size())) {
    for (int r = 0; r < group_.size(); ++r) {
      models_.push_back(std::make_unique<CpuModel>(shards_[r], capacity, &group_.rank(r), arithmetic));
      caches_.push_back(models_.back()->new_cache(capacity));
    }
  }

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
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
        status[r] = models_[r]->forward(tokens, T, caches_[r], mode, follower_logits[r]);
      });
    }
    omp_set_num_threads(per_rank);
    status[0] = models_[0]->forward(tokens, T, caches_[0], mode, logits);
    omp_set_num_threads(caller_threads);
    for (std::thread& t : followers) t.join();
    // Every rank validates the same input, so they fail (or not) together.
    for (const Status& s : status) DUET_TRY(s);
    return ok_status();
  }
  void reset() override {
    for (KvCache& c : caches_) c.clear();
  }
  int position() const override { return caches_[0].length; }
  int capacity() const override { return caches_[0].capacity; }
  int vocab_size() const override { return shards_[0].config.vocab_size; }
  std::string device_name() const override { return str_cat("cpu (tp ", group_.size(), ")"); }

 private:
  std::vector<ModelWeights> shards_;  // [tp]
  InProcessGroup group_;
  std::vector<std::unique_ptr<CpuModel>> models_;  // [tp]
  std::vector<KvCache> caches_;                    // [tp]
};

// One rank of a group whose other ranks are other processes: its shard, model and cache.
class CpuTpRankDecoder final : public Decoder {
 public:
  CpuTpRankDecoder(ModelWeights shard, int capacity, Communicator& comm, CpuArithmetic arithmetic)
      : shard_(std::move(shard)),
        comm_(comm),
        model_(shard_, capacity, &comm, arithmetic),
        cache_(model_.new_cache(capacity)) {}

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    return model_.forward(tokens, T, cache_, mode, logits);
  }
  void reset() override { cache_.clear(); }
  int position() const override { return cache_.length; }
  int capacity() const override { return cache_.capacity; }
  int vocab_size() const override { return shard_.config.vocab_size; }
  std::string device_name() const override { return str_cat("cpu (tp ", comm_.size(), ", a process each)"); }

 private:
  ModelWeights shard_;
  Communicator& comm_;
  CpuModel model_;
  KvCache cache_;
};

}  // namespace

Result<std::unique_ptr<Decoder>> make_cpu_tp_rank_decoder(const ModelWeights& weights, int capacity,
                                                          Communicator& comm, CpuArithmetic arithmetic) {
  DUET_TRY(check_tensor_parallel(weights, comm.size()));
  DUET_ASSIGN_OR_RETURN(ModelWeights shard, shard_weights(weights, comm.rank(), comm.size()));
  return std::unique_ptr<Decoder>(std::make_unique<CpuTpRankDecoder>(std::move(shard), capacity, comm, arithmetic));
}

Result<std::unique_ptr<Decoder>> make_cpu_tp_decoder(const ModelWeights& weights, int capacity, int tp,
                                                     CpuArithmetic arithmetic) {
  DUET_TRY(check_tensor_parallel(weights, tp));
  std::vector<ModelWeights> shards;
  for (int r = 0; r < tp; ++r) {
    DUET_ASSIGN_OR_RETURN(ModelWeights shard, shard_weights(weights, r, tp));
    shards.push_back(std::move(shard));
  }
  return std::unique_ptr<Decoder>(std::make_unique<CpuTpDecoder>(std::move(shards), capacity, arithmetic));
}

}  // namespace duet
