// CudaTpDecoder (cuda_tp_decoder.h): rank 0 in the calling process, ranks
// 1..N-1 in forked workers. Messages on the pipes are plain structs: both ends
// are the same binary on the same host. CudaTpRankDecoder: one rank of an
// mpirun job, whose steps runtime/tp_leader.h delivers.
#include "backends/cuda/cuda_tp_decoder.h"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "backends/cuda/cuda_model.h"
#include "kernels/cuda/cuda_check.cuh"
#include "model/tp_shard.h"
#include "parallel/nccl_communicator.h"
#include "runtime/tp_leader.h"

namespace duet {
namespace {

enum class Op : int32_t { Start, Go, Forward, Reset, Quit };

struct Command {
  Op op = Op::Quit;
  int32_t T = 0;     // Forward: tokens that follow
  int32_t mode = 0;  // Forward: LogitsMode
  NcclId id{};       // Start
};

// Worker -> rank 0 during start-up: ok, or an error message.
struct Reply {
  int32_t ok = 0;
  char message[480] = {};
};

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool read_all(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::read(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

CudaModelOptions decoder_options(int capacity) {
  CudaModelOptions options;
  options.max_batch = 1;
  options.max_context = capacity;
  options.max_prefill = std::min(capacity, 1024);
  return options;
}

// Rank r's model on GPU `device`.
Result<std::unique_ptr<CudaModel>> make_rank_model(const ModelWeights& weights, int rank, int tp, int device,
                                                   int capacity) {
  DUET_ASSIGN_OR_RETURN(ModelWeights shard, shard_weights(weights, rank, tp));
  DUET_CUDA_TRY(cudaSetDevice(device));
  return CudaModel::create(shard, decoder_options(capacity));
}

// One step on a rank's model: a single token decodes (graph), more prefill.
Status run_step(CudaModel& model, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) {
  if (T == 1) return model.decode(tokens, 1, logits);
  return model.prefill(0, tokens, T, mode, logits);
}

// A worker's life after fork: start-up replies on `out`, then steps from `in` until Quit or EOF.
int worker_main(const ModelWeights& weights, int rank, int tp, int capacity, int in, int out) {
  auto reply = [&](const Status& s) {
    Reply r;
    r.ok = s.ok() ? 1 : 0;
    if (!s.ok()) std::snprintf(r.message, sizeof(r.message), "rank %d: %s", rank, s.message().c_str());
    return write_all(out, &r, sizeof(r));
  };
  Command cmd;
  if (!read_all(in, &cmd, sizeof(cmd)) || cmd.op != Op::Start) return 0;
  Result<std::unique_ptr<CudaModel>> model = make_rank_model(weights, rank, tp, rank, capacity);
  if (!reply(model.ok() ? ok_status() : Status(model.error())) || !model.ok()) return 1;
  if (!read_all(in, &cmd, sizeof(cmd)) || cmd.op != Op::Go) return 0;
  auto comm = make_nccl_communicator(cmd.id, rank, tp, rank, (*model)->stream());
  if (!comm.ok()) {
    std::fprintf(stderr, "duet: error: rank %d: %s\n", rank, comm.message().c_str());
    return 1;
  }
  if (Status s = (*model)->set_communicator(comm->get()); !s.ok()) return 1;
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  while (read_all(in, &cmd, sizeof(cmd))) {
    switch (cmd.op) {
      case Op::Forward: {
        tokens.resize(static_cast<size_t>(cmd.T));
        if (!read_all(in, tokens.data(), tokens.size() * sizeof(int32_t))) return 1;
        const Status s = run_step(**model, tokens.data(), cmd.T, static_cast<LogitsMode>(cmd.mode), logits);
        if (!s.ok()) {
          // Rank 0 validated the step, so this is a device failure; rank 0 would wait in NCCL for us.
          std::fprintf(stderr, "duet: error: rank %d: %s\n", rank, s.message().c_str());
          return 1;
        }
        break;
      }
      case Op::Reset: (*model)->reset(0); break;
      case Op::Quit: return 0;
      default: return 1;
    }
  }
  return 0;
}

struct Worker {
  pid_t pid = -1;
  int to = -1;    // commands
  int from = -1;  // start-up replies
};

class CudaTpDecoder final : public Decoder {
 public:
  CudaTpDecoder(std::vector<Worker> workers, int capacity, int vocab)
      : workers_(std::move(workers)), capacity_(capacity), vocab_(vocab) {}
  ~CudaTpDecoder() override { stop_workers(workers_); }

  // Rank 0's start-up after the fork: see make_cuda_tp_decoder.
  Status start(const ModelWeights& weights, int tp) {
    int devices = 0;
    DUET_CUDA_TRY(cudaGetDeviceCount(&devices));
    if (devices < tp) return make_error("--tp ", tp, " needs ", tp, " GPUs; ", devices, " visible");
    DUET_ASSIGN_OR_RETURN(NcclId id, make_nccl_id());
    Command start;
    start.op = Op::Start;
    DUET_TRY(send_all(start));
    DUET_ASSIGN_OR_RETURN(model_, make_rank_model(weights, 0, tp, 0, capacity_));
    for (size_t w = 0; w < workers_.size(); ++w) {
      Reply r;
      if (!read_all(workers_[w].from, &r, sizeof(r))) return make_error("tensor-parallel rank ", w + 1, " exited during start-up");
      if (!r.ok) return make_error(r.message);
    }
    Command go;
    go.op = Op::Go;
    go.id = id;
    DUET_TRY(send_all(go));
    DUET_ASSIGN_OR_RETURN(comm_, make_nccl_communicator(id, 0, tp, 0, model_->stream()));
    return model_->set_communicator(comm_.get());
  }

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    // Every check a rank's step makes is made here first, so that workers never fail on input.
    if (T <= 0) return make_error("forward: no tokens to run");
    if (position() + T > capacity_) {
      return make_error(position() + T, " tokens do not fit the context of ", capacity_, " positions (", position(),
                        " already used); raise --ctx or shorten the prompt");
    }
    for (int t = 0; t < T; ++t) {
      if (tokens[t] < 0 || tokens[t] >= vocab_) {
        return make_error("token id ", tokens[t], " is outside the vocabulary [0, ", vocab_, ")");
      }
    }
    Command cmd;
    cmd.op = Op::Forward;
    cmd.T = T;
    cmd.mode = static_cast<int32_t>(mode);
    for (const Worker& w : workers_) {
      if (!write_all(w.to, &cmd, sizeof(cmd)) || !write_all(w.to, tokens, static_cast<size_t>(T) * sizeof(int32_t))) {
        return make_error("a tensor-parallel worker process is gone");
      }
    }
    return run_step(*model_, tokens, T, mode, logits);
  }
  void reset() override {
    Command cmd;
    cmd.op = Op::Reset;
    for (const Worker& w : workers_) write_all(w.to, &cmd, sizeof(cmd));
    model_->reset(0);
  }
  int position() const override { return model_->length(0); }
  int capacity() const override { return capacity_; }
  int vocab_size() const override { return vocab_; }
  std::string device_name() const override {
    return "cuda (" + cuda_device_name() + ", bf16, tp " + std::to_string(workers_.size() + 1) + ")";
  }

  static void stop_workers(std::vector<Worker>& workers) {
    Command quit;
    quit.op = Op::Quit;
    for (Worker& w : workers) {
      write_all(w.to, &quit, sizeof(quit));
      ::close(w.to);
      ::close(w.from);
    }
    for (Worker& w : workers) {
      int status = 0;
      waitpid(w.pid, &status, 0);
    }
    workers.clear();
  }

 private:
  Status send_all(const Command& cmd) {
    for (const Worker& w : workers_) {
      if (!write_all(w.to, &cmd, sizeof(cmd))) return make_error("a tensor-parallel worker process is gone");
    }
    return ok_status();
  }

  std::vector<Worker> workers_;  // ranks 1..N-1
  int capacity_, vocab_;
  std::unique_ptr<CudaModel> model_;   // rank 0's shard on GPU 0
  std::unique_ptr<Communicator> comm_;
};

// One rank of an mpirun job: its shard's model on its GPU, joined to the others by NCCL.
class CudaTpRankDecoder final : public Decoder {
 public:
  CudaTpRankDecoder(std::unique_ptr<CudaModel> model, std::unique_ptr<Communicator> comm, int capacity, int vocab)
      : capacity_(capacity), vocab_(vocab), model_(std::move(model)), comm_(std::move(comm)) {}

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    return run_step(*model_, tokens, T, mode, logits);
  }
  void reset() override { model_->reset(0); }
  int position() const override { return model_->length(0); }
  int capacity() const override { return capacity_; }
  int vocab_size() const override { return vocab_; }
  std::string device_name() const override {
    return "cuda (" + cuda_device_name() + ", bf16, tp " + std::to_string(comm_->size()) + ", a process each)";
  }

 private:
  int capacity_, vocab_;
  std::unique_ptr<CudaModel> model_;
  std::unique_ptr<Communicator> comm_;  // NCCL, on model_'s stream
};

}  // namespace

Result<std::unique_ptr<Decoder>> make_cuda_tp_rank_decoder(const ModelWeights& weights, int capacity, int device,
                                                           Communicator& control) {
  const int rank = control.rank(), tp = control.size();
  std::unique_ptr<CudaModel> model;
  NcclId id{};
  // Everything that can fail on one rank alone, agreed on before NCCL's start-up, which waits for every rank.
  auto build = [&]() -> Status {
    DUET_TRY(check_tensor_parallel(weights, tp));
    int devices = 0;
    DUET_CUDA_TRY(cudaGetDeviceCount(&devices));
    if (device >= devices) {
      return make_error("rank ", rank, " takes GPU ", device, " (its local rank) but its host has ", devices, " visible");
    }
    DUET_ASSIGN_OR_RETURN(model, make_rank_model(weights, rank, tp, device, capacity));
    if (rank == 0) {
      DUET_ASSIGN_OR_RETURN(id, make_nccl_id());
    }
    return ok_status();
  };
  DUET_TRY(agree_on(control, build()));
  DUET_TRY(control.broadcast(id.data(), static_cast<int64_t>(id.size()), 0));
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                        make_nccl_communicator(id, rank, tp, device, model->stream()));
  DUET_TRY(model->set_communicator(comm.get()));
  return std::unique_ptr<Decoder>(
      std::make_unique<CudaTpRankDecoder>(std::move(model), std::move(comm), capacity, weights.config.vocab_size));
}

Result<std::unique_ptr<Decoder>> make_cuda_tp_decoder(const ModelWeights& weights, int capacity, int tp) {
  DUET_TRY(check_tensor_parallel(weights, tp));
  // A worker that died must give rank 0 a write error (reported), not a SIGPIPE that ends it silently.
  std::signal(SIGPIPE, SIG_IGN);
  // Workers are forked before this process touches CUDA (a CUDA context does not survive fork).
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<Worker> workers;
  for (int rank = 1; rank < tp; ++rank) {
    int to[2], from[2];
    if (::pipe(to) != 0 || ::pipe(from) != 0) {
      CudaTpDecoder::stop_workers(workers);
      return make_error("cannot create the pipes of tensor-parallel rank ", rank);
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      CudaTpDecoder::stop_workers(workers);
      return make_error("cannot start tensor-parallel rank ", rank, " (fork failed)");
    }
    if (pid == 0) {
      ::close(to[1]);
      ::close(from[0]);
      for (const Worker& w : workers) {
        ::close(w.to);
        ::close(w.from);
      }
      _exit(worker_main(weights, rank, tp, capacity, to[0], from[1]));
    }
    ::close(to[0]);
    ::close(from[1]);
    workers.push_back({pid, to[1], from[0]});
  }
  auto decoder = std::make_unique<CudaTpDecoder>(std::move(workers), capacity, weights.config.vocab_size);
  DUET_TRY(decoder->start(weights, tp));  // on error the destructor stops the workers
  return std::unique_ptr<Decoder>(std::move(decoder));
}

}  // namespace duet
