// CudaTpDecoder and CudaTpBatchDecoder (cuda_tp_decoder.h): rank 0 in the
// calling process, ranks 1..N-1 in forked workers (a WorkerGroup). Messages on
// the pipes are plain structs: both ends are the same binary on the same host.
// CudaTpRankDecoder: one rank of an mpirun job, whose steps runtime/tp_leader.h
// delivers.
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

// Forward: the one-sequence decoder's step (sequence 0). Prefill, Decode, Reset: the batch decoder's.
enum class Op : int32_t { Start, Go, Forward, Prefill, Decode, Reset, Quit };

struct Command {
  Op op = Op::Quit;
  int32_t T = 0;     // Forward, Prefill: tokens that follow; Decode: B, then B slot ids and B tokens follow
  int32_t mode = 0;  // Forward, Prefill: LogitsMode
  int32_t slot = 0;  // Prefill, Reset
  NcclId id{};       // Go
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

CudaModelOptions model_options(int slots, int capacity, int max_prefill) {
  CudaModelOptions options;
  options.max_batch = slots;
  options.max_context = capacity;
  options.max_prefill = std::min(capacity, max_prefill);
  return options;
}

// Rank r's model on GPU `device`.
Result<std::unique_ptr<CudaModel>> make_rank_model(const ModelWeights& weights, int rank, int tp, int device,
                                                   const CudaModelOptions& options) {
  DUET_ASSIGN_OR_RETURN(ModelWeights shard, shard_weights(weights, rank, tp));
  DUET_CUDA_TRY(cudaSetDevice(device));
  return CudaModel::create(shard, options);
}

// One step on a rank's model: a single token decodes (graph), more prefill.
Status run_step(CudaModel& model, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) {
  if (T == 1) return model.decode(tokens, 1, logits);
  return model.prefill(0, tokens, T, mode, logits);
}

// The checks CudaModel::prefill makes before any collective, made on rank 0 before a step is sent, so
// that no rank fails on input while the others wait in an all-reduce.
Status check_prefill(const CudaModel& model, int slot, const int32_t* tokens, int T) {
  if (slot < 0 || slot >= model.max_batch()) return make_error("sequence ", slot, " out of range [0, ", model.max_batch(), ")");
  if (T <= 0) return make_error("forward: no tokens to run");
  if (model.length(slot) + T > model.max_context()) {
    return make_error(model.length(slot) + T, " tokens do not fit the context of ", model.max_context(), " positions (",
                      model.length(slot), " already used); raise --ctx or shorten the prompt");
  }
  const int V = model.config().vocab_size;
  for (int t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= V) return make_error("token id ", tokens[t], " is outside the vocabulary [0, ", V, ")");
  }
  return ok_status();
}

// The same for CudaModel::decode_sequences.
Status check_decode(const CudaModel& model, const int32_t* slots, const int32_t* tokens, int B) {
  if (B < 1 || B > model.max_batch()) return make_error("decode: batch ", B, " out of range [1, ", model.max_batch(), "]");
  for (int b = 0; b < B; ++b) DUET_TRY(check_prefill(model, slots[b], tokens + b, 1));
  return ok_status();
}

// The slot ids and tokens that follow a command on a worker's pipe.
bool read_payload(int in, const Command& cmd, std::vector<int32_t>& slots, std::vector<int32_t>& tokens) {
  const size_t T = static_cast<size_t>(cmd.T);
  switch (cmd.op) {
    case Op::Forward:
    case Op::Prefill: tokens.resize(T); return read_all(in, tokens.data(), T * sizeof(int32_t));
    case Op::Decode:
      slots.resize(T);
      tokens.resize(T);
      return read_all(in, slots.data(), T * sizeof(int32_t)) && read_all(in, tokens.data(), T * sizeof(int32_t));
    default: return true;
  }
}

// A worker's share of one command: the same call rank 0 makes, its collectives meeting rank 0's.
Status execute(CudaModel& model, const Command& cmd, const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens,
               std::vector<float>& logits) {
  const LogitsMode mode = static_cast<LogitsMode>(cmd.mode);
  switch (cmd.op) {
    case Op::Forward: return run_step(model, tokens.data(), cmd.T, mode, logits);
    case Op::Prefill: return model.prefill(cmd.slot, tokens.data(), cmd.T, mode, logits);
    case Op::Decode: return model.decode_sequences(slots.data(), tokens.data(), cmd.T, logits);
    case Op::Reset: model.reset(cmd.slot); return ok_status();
    default: return make_error("unexpected command ", static_cast<int>(cmd.op));
  }
}

// A worker's life after fork: start-up replies on `out`, then steps from `in` until Quit or EOF.
int worker_main(const ModelWeights& weights, int rank, int tp, const CudaModelOptions& options, int in, int out) {
  auto reply = [&](const Status& s) {
    Reply r;
    r.ok = s.ok() ? 1 : 0;
    if (!s.ok()) std::snprintf(r.message, sizeof(r.message), "rank %d: %s", rank, s.message().c_str());
    return write_all(out, &r, sizeof(r));
  };
  Command cmd;
  if (!read_all(in, &cmd, sizeof(cmd)) || cmd.op != Op::Start) return 0;
  Result<std::unique_ptr<CudaModel>> made = make_rank_model(weights, rank, tp, rank, options);
  if (!reply(made.ok() ? ok_status() : Status(made.error())) || !made.ok()) return 1;
  CudaModel& model = **made;
  if (!read_all(in, &cmd, sizeof(cmd)) || cmd.op != Op::Go) return 0;
  auto comm = make_nccl_communicator(cmd.id, rank, tp, rank, model.stream());
  if (!comm.ok()) {
    std::fprintf(stderr, "duet: error: rank %d: %s\n", rank, comm.message().c_str());
    return 1;
  }
  if (Status s = model.set_communicator(comm->get()); !s.ok()) return 1;
  std::vector<int32_t> tokens, slots;
  std::vector<float> logits;
  while (read_all(in, &cmd, sizeof(cmd))) {
    if (cmd.op == Op::Quit) return 0;
    if (!read_payload(in, cmd, slots, tokens)) return 1;
    if (const Status s = execute(model, cmd, slots, tokens, logits); !s.ok()) {
      // Rank 0 checked the step, so this is a device failure; rank 0 would wait in NCCL for us.
      std::fprintf(stderr, "duet: error: rank %d: %s\n", rank, s.message().c_str());
      return 1;
    }
  }
  return 0;
}

struct Worker {
  pid_t pid = -1;
  int to = -1;    // commands
  int from = -1;  // start-up replies
};

void stop_workers(std::vector<Worker>& workers) {
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

// Ranks 1..N-1 as forked worker processes, rank 0's model in this process, all joined by NCCL.
class WorkerGroup {
 public:
  // Forks the workers (before this process touches CUDA: a CUDA context does not survive fork), then
  // starts every rank's model with `options`. An error names a `tp` that does not split the model or
  // exceeds the visible GPUs.
  static Result<std::unique_ptr<WorkerGroup>> start(const ModelWeights& weights, int tp, const CudaModelOptions& options) {
    DUET_TRY(check_tensor_parallel(weights, tp));
    // A worker that died must give rank 0 a write error (reported), not a SIGPIPE that ends it silently.
    std::signal(SIGPIPE, SIG_IGN);
    std::fflush(stdout);
    std::fflush(stderr);
    auto group = std::unique_ptr<WorkerGroup>(new WorkerGroup);
    for (int rank = 1; rank < tp; ++rank) {
      int to[2], from[2];
      if (::pipe(to) != 0 || ::pipe(from) != 0) return make_error("cannot create the pipes of tensor-parallel rank ", rank);
      const pid_t pid = ::fork();
      if (pid < 0) return make_error("cannot start tensor-parallel rank ", rank, " (fork failed)");
      if (pid == 0) {
        ::close(to[1]);
        ::close(from[0]);
        for (const Worker& w : group->workers_) {
          ::close(w.to);
          ::close(w.from);
        }
        _exit(worker_main(weights, rank, tp, options, to[0], from[1]));
      }
      ::close(to[0]);
      ::close(from[1]);
      group->workers_.push_back({pid, to[1], from[0]});
    }
    DUET_TRY(group->join(weights, tp, options));  // on error the destructor stops the workers
    return std::move(group);  // into the Result: nvcc (C++17) does not move it implicitly
  }
  ~WorkerGroup() { stop_workers(workers_); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  CudaModel& model() { return *model_; }  // rank 0's shard on GPU 0
  // `cmd` and then each payload [0, n) to every worker.
  Status send(const Command& cmd, const int32_t* a = nullptr, int na = 0, const int32_t* b = nullptr, int nb = 0) {
    for (const Worker& w : workers_) {
      if (!write_all(w.to, &cmd, sizeof(cmd)) || !write_all(w.to, a, static_cast<size_t>(na) * sizeof(int32_t)) ||
          !write_all(w.to, b, static_cast<size_t>(nb) * sizeof(int32_t))) {
        return make_error("a tensor-parallel worker process is gone");
      }
    }
    return ok_status();
  }

 private:
  WorkerGroup() = default;

  // Rank 0's start-up after the fork.
  Status join(const ModelWeights& weights, int tp, const CudaModelOptions& options) {
    int devices = 0;
    DUET_CUDA_TRY(cudaGetDeviceCount(&devices));
    if (devices < tp) return make_error("--tp ", tp, " needs ", tp, " GPUs; ", devices, " visible");
    DUET_ASSIGN_OR_RETURN(NcclId id, make_nccl_id());
    Command start;
    start.op = Op::Start;
    DUET_TRY(send(start));
    DUET_ASSIGN_OR_RETURN(model_, make_rank_model(weights, 0, tp, 0, options));
    for (size_t w = 0; w < workers_.size(); ++w) {
      Reply r;
      if (!read_all(workers_[w].from, &r, sizeof(r))) return make_error("tensor-parallel rank ", w + 1, " exited during start-up");
      if (!r.ok) return make_error(r.message);
    }
    Command go;
    go.op = Op::Go;
    go.id = id;
    DUET_TRY(send(go));
    DUET_ASSIGN_OR_RETURN(comm_, make_nccl_communicator(id, 0, tp, 0, model_->stream()));
    return model_->set_communicator(comm_.get());
  }

  std::vector<Worker> workers_;  // ranks 1..N-1
  std::unique_ptr<CudaModel> model_;
  std::unique_ptr<Communicator> comm_;
};

std::string group_device_name(int tp) { return "cuda (" + cuda_device_name() + ", bf16, tp " + std::to_string(tp) + ")"; }

class CudaTpDecoder final : public Decoder {
 public:
  explicit CudaTpDecoder(std::unique_ptr<WorkerGroup> group) : group_(std::move(group)) {}

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    DUET_TRY(check_prefill(group_->model(), 0, tokens, T));
    Command cmd;
    cmd.op = Op::Forward;
    cmd.T = T;
    cmd.mode = static_cast<int32_t>(mode);
    DUET_TRY(group_->send(cmd, tokens, T));
    return run_step(group_->model(), tokens, T, mode, logits);
  }
  void reset() override {
    Command cmd;
    cmd.op = Op::Reset;
    (void)group_->send(cmd);  // a worker that is gone fails the next step
    group_->model().reset(0);
  }
  int position() const override { return group_->model().length(0); }
  int capacity() const override { return group_->model().max_context(); }
  int vocab_size() const override { return group_->model().config().vocab_size; }
  std::string device_name() const override { return group_device_name(group_->size()); }

 private:
  std::unique_ptr<WorkerGroup> group_;
};

class CudaTpBatchDecoder final : public BatchDecoder {
 public:
  explicit CudaTpBatchDecoder(std::unique_ptr<WorkerGroup> group) : group_(std::move(group)) {}

  int slots() const override { return group_->model().max_batch(); }
  int capacity() const override { return group_->model().max_context(); }
  int vocab_size() const override { return group_->model().config().vocab_size; }
  std::string device_name() const override { return group_device_name(group_->size()); }
  int length(int slot) const override { return group_->model().length(slot); }
  void reset(int slot) override {
    Command cmd;
    cmd.op = Op::Reset;
    cmd.slot = slot;
    (void)group_->send(cmd);  // a worker that is gone fails the next step
    group_->model().reset(slot);
  }

  Status prefill(int slot, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    DUET_TRY(check_prefill(group_->model(), slot, tokens, T));
    Command cmd;
    cmd.op = Op::Prefill;
    cmd.T = T;
    cmd.mode = static_cast<int32_t>(mode);
    cmd.slot = slot;
    DUET_TRY(group_->send(cmd, tokens, T));
    return group_->model().prefill(slot, tokens, T, mode, logits);
  }
  Status decode(const int32_t* slot_ids, const int32_t* tokens, int B, std::vector<float>& logits) override {
    DUET_TRY(check_decode(group_->model(), slot_ids, tokens, B));
    Command cmd;
    cmd.op = Op::Decode;
    cmd.T = B;
    DUET_TRY(group_->send(cmd, slot_ids, B, tokens, B));
    return group_->model().decode_sequences(slot_ids, tokens, B, logits);
  }

 private:
  std::unique_ptr<WorkerGroup> group_;
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
    DUET_ASSIGN_OR_RETURN(model, make_rank_model(weights, rank, tp, device, model_options(1, capacity, 1024)));
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
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<WorkerGroup> group, WorkerGroup::start(weights, tp, model_options(1, capacity, 1024)));
  return std::unique_ptr<Decoder>(std::make_unique<CudaTpDecoder>(std::move(group)));
}

Result<std::unique_ptr<BatchDecoder>> make_cuda_tp_batch_decoder(const ModelWeights& weights, int slots, int capacity,
                                                                 int max_prefill, int tp) {
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<WorkerGroup> group,
                        WorkerGroup::start(weights, tp, model_options(slots, capacity, max_prefill)));
  return std::unique_ptr<BatchDecoder>(std::make_unique<CudaTpBatchDecoder>(std::move(group)));
}

}  // namespace duet
