// TpJob (cli/tp_launch.h).
#include "cli/tp_launch.h"

#include <cstdio>
#include <cstdlib>

#ifdef DUET_HAVE_MPI
#include "parallel/mpi_bootstrap.h"
#include "parallel/mpi_communicator.h"
#include "runtime/tp_leader.h"
#endif
#ifdef DUET_HAVE_NCCL
#include "backends/cuda/cuda_tp_decoder.h"
#endif

namespace duet::cli {
namespace {

// The size of the mpirun job this process was started in; 0 outside mpirun.
int mpirun_size() {
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  return size ? std::atoi(size) : 0;
}

}  // namespace

#ifdef DUET_HAVE_MPI
struct TpJob::Mpi {
  MpiRank rank;
  std::unique_ptr<Communicator> control;  // MPI_COMM_WORLD, host buffers
  std::unique_ptr<TpLeader> leader;       // rank 0
  bool step_failed = false;               // a follower's step failed: the job must be aborted

  // This rank's decoder on --device.
  RankDecoderFactory factory(const ModelWeights& weights, const ModelOptions& options) {
    return [this, &weights, device = options.device,
            arithmetic = options.arithmetic()](int capacity) -> Result<std::unique_ptr<Decoder>> {
      if (device == "cpu") return make_cpu_tp_rank_decoder(weights, capacity, *control, arithmetic);
#ifdef DUET_HAVE_NCCL
      if (device == "cuda") return make_cuda_tp_rank_decoder(weights, capacity, rank.local_rank, *control);
#endif
      return make_error("--tp ", rank.size, " on --device ", device, " is not available in this build");
    };
  }
};
#else
struct TpJob::Mpi {};
#endif

TpJob::TpJob(std::unique_ptr<Mpi> mpi) : mpi_(std::move(mpi)) {}

Result<std::unique_ptr<TpJob>> TpJob::join(const ModelOptions& options) {
  if (options.tp < 1) return make_error("--tp must be at least 1 (got ", options.tp, ")");
  const int size = mpirun_size();
  // mpirun -np 1 with --tp 1 is one process alone: nothing to join.
  if (size == 0 || (size == 1 && options.tp == 1)) return std::unique_ptr<TpJob>(new TpJob(nullptr));
  const std::string mismatch =
      size == options.tp ? "" : str_cat("under mpirun each process is one rank: --tp ", options.tp,
                                        " needs mpirun -np ", options.tp, " (this job has ", size, ")");
#ifdef DUET_HAVE_MPI
  auto mpi = std::make_unique<Mpi>();
  DUET_ASSIGN_OR_RETURN(mpi->rank, mpi_start(nullptr, nullptr));
  if (!mismatch.empty()) {
    // Every rank prints before any leaves MPI: mpirun ends the job when the first one exits with an error.
    std::fprintf(stderr, "duet: error: %s\n", mismatch.c_str());
    std::fflush(stderr);
    if (auto world = make_mpi_communicator(); world.ok()) (void)(*world)->barrier();
    mpi_stop();
    throw CLI::RuntimeError(1);
  }
  DUET_ASSIGN_OR_RETURN(mpi->control, make_mpi_communicator());
  if (mpi->rank.rank == 0) mpi->leader = std::make_unique<TpLeader>(*mpi->control);
  return std::unique_ptr<TpJob>(new TpJob(std::move(mpi)));
#else
  if (!mismatch.empty()) return make_error(mismatch);
  return make_error("this duet was built without MPI (libopenmpi-dev), so its ranks cannot run under mpirun");
#endif
}

TpJob::~TpJob() {
#ifdef DUET_HAVE_MPI
  if (!mpi_) return;
  if (mpi_->step_failed || (mpi_->leader && !mpi_->leader->quit().ok())) {
    std::fflush(stdout);
    std::fflush(stderr);
    mpi_abort(1);
  }
  mpi_stop();
#endif
}

bool TpJob::follower() const {
#ifdef DUET_HAVE_MPI
  return mpi_ && mpi_->rank.rank != 0;
#else
  return false;
#endif
}

void TpJob::follow(const ModelOptions& options) {
#ifdef DUET_HAVE_MPI
  // Loads while rank 0 does (from the same path on this host); a failure is this rank's answer to rank 0's
  // first start, and no answer at all when rank 0 ends before it starts a decoder.
  const Result<LoadedModel> model = load(options);
  const RankDecoderFactory make_rank = [&](int capacity) -> Result<std::unique_ptr<Decoder>> {
    if (!model.ok()) return model.error();
    return mpi_->factory(model->weights, options)(capacity);
  };
  const Status status = follow_tp_leader(*mpi_->control, make_rank, &mpi_->step_failed);
  if (!status.ok()) fail(str_cat("rank ", mpi_->rank.rank, ": ", status.message()));
#endif
}

Result<std::unique_ptr<Decoder>> TpJob::make_decoder(const ModelWeights& weights, const ModelOptions& options,
                                                     int capacity) {
#ifdef DUET_HAVE_MPI
  if (mpi_) return mpi_->leader->start(capacity, mpi_->factory(weights, options));
#endif
  return cli::make_decoder(weights, options.device, capacity, options.tp, options.arithmetic());
}

}  // namespace duet::cli
