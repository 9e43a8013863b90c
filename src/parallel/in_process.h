// InProcessGroup: N ranks as threads of one process, sharing host memory.
//
// The CPU backend's tensor parallelism (and the tests' reference for every
// other communicator). A collective publishes each rank's buffer, then each
// rank reduces its own slice of the elements over all ranks in rank order
// into a shared scratch, then every rank copies the result back: the result
// is identical on all ranks and does not depend on thread timing. Waits block
// (std::barrier), so ranks may outnumber cores.
#pragma once

#include <barrier>
#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace duet {

class InProcessGroup {
 public:
  explicit InProcessGroup(int size);
  ~InProcessGroup();
  InProcessGroup(const InProcessGroup&) = delete;
  InProcessGroup& operator=(const InProcessGroup&) = delete;
  int size() const { return size_; }
  // The communicator of `rank`, owned by the group; call it only from that rank's thread.
  Communicator& rank(int r);

 private:
  class Rank;
  friend class Rank;

  int size_;
  std::barrier<> barrier_;
  std::vector<void*> buffers_;  // [size]: each rank's buffer of the collective in flight
  std::vector<float> scratch_;  // the reduced result, [count]
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace duet
