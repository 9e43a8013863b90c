// MpiCommunicator (parallel/mpi_communicator.h).
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "parallel/mpi/mpi_check.h"

namespace duet {
namespace {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  Status all_reduce_sum(float* data, int64_t count) override {
    // MPI counts are int: gather in chunks whose P copies fit one.
    const int64_t chunk_max = INT_MAX / size_;
    for (int64_t begin = 0; begin < count; begin += chunk_max) {
      const int n = static_cast<int>(std::min(chunk_max, count - begin));
      gathered_.resize(static_cast<size_t>(n) * size_);
      DUET_MPI_TRY(MPI_Allgather(data + begin, n, MPI_FLOAT, gathered_.data(), n, MPI_FLOAT, MPI_COMM_WORLD));
      float* out = data + begin;
      for (int i = 0; i < n; ++i) out[i] = gathered_[i];
      for (int r = 1; r < size_; ++r) {
        const float* in = gathered_.data() + static_cast<size_t>(r) * n;
        for (int i = 0; i < n; ++i) out[i] += in[i];
      }
    }
    return ok_status();
  }

  Status broadcast(void* data, int64_t bytes, int root) override {
    if (root < 0 || root >= size_) return make_error("broadcast: root ", root, " is not a rank of ", size_);
    char* p = static_cast<char*>(data);
    for (int64_t begin = 0; begin < bytes; begin += INT_MAX) {
      const int n = static_cast<int>(std::min<int64_t>(INT_MAX, bytes - begin));
      DUET_MPI_TRY(MPI_Bcast(p + begin, n, MPI_BYTE, root, MPI_COMM_WORLD));
    }
    return ok_status();
  }

  Status barrier() override {
    DUET_MPI_TRY(MPI_Barrier(MPI_COMM_WORLD));
    return ok_status();
  }

 private:
  int rank_, size_;
  std::vector<float> gathered_;  // [size, chunk]: every rank's buffer of the all-reduce in flight
};

}  // namespace

Result<std::unique_ptr<Communicator>> make_mpi_communicator() {
  int rank = 0, size = 1;
  DUET_MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  DUET_MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &size));
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(rank, size));
}

}  // namespace duet
