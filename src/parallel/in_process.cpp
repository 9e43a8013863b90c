#include "parallel/in_process.h"

#include <cstring>

#include "core/check.h"

namespace duet {

class InProcessGroup::Rank final : public Communicator {
 public:
  Rank(InProcessGroup& group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_.size_; }

  Status all_reduce_sum(float* data, int64_t count) override {
    const int n = group_.size_;
    group_.buffers_[rank_] = data;
    if (rank_ == 0) group_.scratch_.resize(static_cast<size_t>(count));
    group_.barrier_.arrive_and_wait();  // every buffer published, scratch sized
    // This rank reduces elements [begin, end) over all ranks, in rank order.
    const int64_t begin = count * rank_ / n, end = count * (rank_ + 1) / n;
    float* out = group_.scratch_.data();
    for (int64_t i = begin; i < end; ++i) out[i] = static_cast<const float*>(group_.buffers_[0])[i];
    for (int r = 1; r < n; ++r) {
      const float* in = static_cast<const float*>(group_.buffers_[r]);
      for (int64_t i = begin; i < end; ++i) out[i] += in[i];
    }
    group_.barrier_.arrive_and_wait();  // scratch complete; nobody reads the buffers any more
    std::memcpy(data, out, static_cast<size_t>(count) * sizeof(float));
    group_.barrier_.arrive_and_wait();  // scratch and buffer slots free for the next collective
    return ok_status();
  }

  Status broadcast(void* data, int64_t bytes, int root) override {
    if (root < 0 || root >= group_.size_) return make_error("broadcast: root ", root, " is not a rank of ", group_.size_);
    if (rank_ == root) group_.buffers_[0] = data;
    group_.barrier_.arrive_and_wait();  // root's buffer published
    if (rank_ != root) std::memcpy(data, group_.buffers_[0], static_cast<size_t>(bytes));
    group_.barrier_.arrive_and_wait();  // root's buffer no longer read
    return ok_status();
  }

  Status barrier() override {
    group_.barrier_.arrive_and_wait();
    return ok_status();
  }

 private:
  InProcessGroup& group_;
  int rank_;
};

InProcessGroup::InProcessGroup(int size) : size_(size), barrier_(size), buffers_(size) {
  DUET_CHECK(size >= 1);
  for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
}

InProcessGroup::~InProcessGroup() = default;

Communicator& InProcessGroup::rank(int r) {
  DUET_CHECK(r >= 0 && r < size_);
  return *ranks_[r];
}

}  // namespace duet
