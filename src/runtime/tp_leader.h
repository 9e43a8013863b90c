// Tensor parallelism with one process per rank (mpirun): rank 0 leads, the
// others follow. Rank 0 runs the command (tokenizes, samples, prints) and,
// for each Decoder it needs, tells the other ranks to start theirs; every step
// it is asked for (forward, reset) it checks, sends to the followers over a
// host `control` communicator and then runs on its own shard. The followers
// only run the steps they are sent; each rank's decoder joins the forward
// pass's collectives (its own communicator, or `control` itself on the CPU).
//
// Start-up failures are agreed on: every rank learns that some rank could not
// start its decoder, and all go on waiting for rank 0's next message (which
// ends them). A step that fails on one rank after the others began it leaves
// them inside a collective; only aborting the job ends that (broken()).
// Every rank must make the same `control` calls in the same order.
#pragma once

#include <functional>
#include <memory>

#include "parallel/communicator.h"
#include "runtime/decoder.h"

namespace duet {

// This rank's decoder of `capacity` positions on its shard; rank 0's returns logits.
using RankDecoderFactory = std::function<Result<std::unique_ptr<Decoder>>(int capacity)>;

// Every rank passes its own status; all return ok only when every rank's was
// ok. Otherwise a rank returns its own error, or one naming the first rank that
// failed (whose own message is on that rank's standard error).
Status agree_on(Communicator& control, const Status& mine);

class TpLeader {
 public:
  explicit TpLeader(Communicator& control) : control_(control) {}

  // Starts a decoder of `capacity` positions on every rank (this one through
  // `make_rank`). Steps of the decoder returned run on all ranks; destroying
  // it ends the followers' decoders. One at a time; must not outlive this object.
  Result<std::unique_ptr<Decoder>> start(int capacity, const RankDecoderFactory& make_rank);
  // Ends the followers' follow_tp_leader (call once, when no decoder is left),
  // unless broken().
  Status quit();
  // A step failed on rank 0 after the followers began it.
  bool broken() const { return broken_; }

 private:
  friend class LeaderDecoder;
  Communicator& control_;
  bool live_ = false;    // a decoder of start() exists
  bool broken_ = false;
};

// A follower rank: starts a decoder through `make_rank` whenever rank 0 starts
// one and runs the steps rank 0 sends, until TpLeader::quit. Returns ok, or
// this rank's first start-up error (after the quit). A step failure returns
// at once with *step_failed set: the other ranks may be waiting for this one
// inside a collective, and the caller must end the job.
Status follow_tp_leader(Communicator& control, const RankDecoderFactory& make_rank, bool* step_failed);

}  // namespace duet
