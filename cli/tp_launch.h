// How a --tp command runs its ranks (docs/tensor_parallel.md).
//
// Outside mpirun all ranks belong to this process: threads on --device cpu,
// forked workers (a GPU each) on cuda; see make_decoder. Under mpirun (OpenMPI:
// OMPI_COMM_WORLD_SIZE is set) each process is one rank and duet starts no
// workers: rank 0 runs the command (tokenizes, samples, prints) and leads; the
// others load the model, follow rank 0's steps (runtime/tp_leader.h) and print
// nothing but their own errors. CPU ranks all-reduce over MPI (bit-identical to
// ranks as threads); GPU ranks take GPU `local rank` of their host and join
// NCCL with the unique id rank 0 broadcasts over MPI.
//
// A --tp command begins with
//     auto job = value_or_fail(TpJob::join(o.model));
//     if (job->follower()) return job->follow(o.model);
// and asks job->make_decoder for its decoder; `job` outlives the decoder.
#pragma once

#include <memory>

#include "cli/common.h"
#include "core/result.h"
#include "runtime/decoder.h"

namespace duet::cli {

class TpJob {
 public:
  // This process's place: alone, or a rank of the mpirun job, which must have
  // --tp processes (an error on every rank otherwise).
  static Result<std::unique_ptr<TpJob>> join(const ModelOptions& options);
  // Rank 0 ends the followers; under mpirun every rank then leaves MPI, or
  // aborts the job when a step failed midway (the others wait in a collective).
  ~TpJob();
  TpJob(const TpJob&) = delete;
  TpJob& operator=(const TpJob&) = delete;

  bool follower() const;
  // A follower's part of the command: loads the model, starts a decoder on its
  // shard whenever rank 0 does and runs the steps rank 0 sends, until rank 0
  // ends. Fails the command with this rank's own error, if it had one.
  void follow(const ModelOptions& options);
  // The command's decoder: make_decoder's outside mpirun; under it, rank 0's
  // decoder, whose steps every rank runs.
  Result<std::unique_ptr<Decoder>> make_decoder(const ModelWeights& weights, const ModelOptions& options,
                                                int capacity);

  struct Mpi;  // the mpirun job (cli/tp_launch.cpp); null outside mpirun

 private:
  explicit TpJob(std::unique_ptr<Mpi> mpi);
  std::unique_ptr<Mpi> mpi_;
};

}  // namespace duet::cli
