// TpLeader and follow_tp_leader (tp_leader.h). A message is a Command
// broadcast from rank 0, then for a forward its T tokens.
#include "runtime/tp_leader.h"

#include <vector>

#include "core/check.h"

namespace duet {
namespace {

enum class Op : int32_t { Start, Forward, Reset, End, Quit };

struct Command {
  Op op = Op::Quit;
  int32_t capacity = 0;  // Start
  int32_t T = 0;         // Forward: tokens that follow
  int32_t mode = 0;      // Forward: LogitsMode
};

// Rank 0 sends, the others receive into `cmd`.
Status send(Communicator& control, Command cmd) { return control.broadcast(&cmd, sizeof(cmd), 0); }
Status receive(Communicator& control, Command& cmd) { return control.broadcast(&cmd, sizeof(cmd), 0); }

}  // namespace

Status agree_on(Communicator& control, const Status& mine) {
  // failed[r] = 1 on the ranks that failed: a sum of 0s and 1s is exact.
  std::vector<float> failed(static_cast<size_t>(control.size()), 0.0f);
  failed[control.rank()] = mine.ok() ? 0.0f : 1.0f;
  DUET_TRY(control.all_reduce_sum(failed.data(), static_cast<int64_t>(failed.size())));
  if (!mine.ok()) return mine;
  for (int r = 0; r < control.size(); ++r) {
    if (failed[r] != 0.0f) {
      return make_error("tensor-parallel rank ", r, " of ", control.size(), " could not start (its own error names why)");
    }
  }
  return ok_status();
}

// Rank 0's view of a decoder that runs on every rank.
class LeaderDecoder final : public Decoder {
 public:
  LeaderDecoder(TpLeader& leader, std::unique_ptr<Decoder> local) : leader_(leader), local_(std::move(local)) {
    leader_.live_ = true;
  }
  ~LeaderDecoder() override {
    leader_.live_ = false;
    if (!leader_.broken_ && !send(leader_.control_, {Op::End}).ok()) leader_.broken_ = true;
  }

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    // The checks every rank's step makes, made here first, so that no follower fails on input.
    if (T <= 0) return make_error("forward: no tokens to run");
    if (position() + T > capacity()) {
      return make_error(position() + T, " tokens do not fit the context of ", capacity(), " positions (", position(),
                        " already used); raise --ctx or shorten the prompt");
    }
    for (int t = 0; t < T; ++t) {
      if (tokens[t] < 0 || tokens[t] >= vocab_size()) {
        return make_error("token id ", tokens[t], " is outside the vocabulary [0, ", vocab_size(), ")");
      }
    }
    Command cmd{Op::Forward};
    cmd.T = T;
    cmd.mode = static_cast<int32_t>(mode);
    staged_.assign(tokens, tokens + T);  // broadcast writes its buffer on the receivers: not the caller's
    Status s = send(leader_.control_, cmd);
    if (s.ok()) s = leader_.control_.broadcast(staged_.data(), static_cast<int64_t>(T) * sizeof(int32_t), 0);
    if (s.ok()) s = local_->forward(tokens, T, mode, logits);
    if (!s.ok()) leader_.broken_ = true;
    return s;
  }
  void reset() override {
    if (!send(leader_.control_, {Op::Reset}).ok()) leader_.broken_ = true;
    local_->reset();
  }
  int position() const override { return local_->position(); }
  int capacity() const override { return local_->capacity(); }
  int vocab_size() const override { return local_->vocab_size(); }
  std::string device_name() const override { return local_->device_name(); }

 private:
  TpLeader& leader_;
  std::unique_ptr<Decoder> local_;  // rank 0's shard
  std::vector<int32_t> staged_;     // [T] the step's tokens
};

Result<std::unique_ptr<Decoder>> TpLeader::start(int capacity, const RankDecoderFactory& make_rank) {
  if (broken_) return make_error("a tensor-parallel step failed midway; the ranks cannot go on");
  if (live_) return make_error("tensor-parallel ranks run one decoder at a time");
  Command cmd{Op::Start};
  cmd.capacity = capacity;
  DUET_TRY(send(control_, cmd));
  Result<std::unique_ptr<Decoder>> local = make_rank(capacity);
  DUET_TRY(agree_on(control_, local.ok() ? ok_status() : Status(local.error())));
  return std::unique_ptr<Decoder>(std::make_unique<LeaderDecoder>(*this, std::move(local).value()));
}

Status TpLeader::quit() {
  DUET_CHECK(!live_);
  if (broken_) return make_error("a tensor-parallel step failed midway; the other ranks must be aborted");
  return send(control_, {Op::Quit});
}

Status follow_tp_leader(Communicator& control, const RankDecoderFactory& make_rank, bool* step_failed) {
  *step_failed = false;
  Status first_error;
  std::unique_ptr<Decoder> decoder;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // stays empty: only rank 0 computes logits
  auto failed_in_step = [&](Status s) {
    if (!s.ok()) *step_failed = true;
    return s;
  };
  for (;;) {
    Command cmd;
    DUET_TRY(failed_in_step(receive(control, cmd)));
    switch (cmd.op) {
      case Op::Start: {
        Result<std::unique_ptr<Decoder>> made = make_rank(cmd.capacity);
        const Status mine = made.ok() ? ok_status() : Status(made.error());
        if (!mine.ok() && first_error.ok()) first_error = mine;
        if (agree_on(control, mine).ok()) decoder = std::move(made).value();
        break;
      }
      case Op::Forward:
        if (!decoder) return failed_in_step(make_error("rank ", control.rank(), ": a step came with no decoder started"));
        tokens.resize(static_cast<size_t>(cmd.T));
        DUET_TRY(failed_in_step(control.broadcast(tokens.data(), static_cast<int64_t>(cmd.T) * sizeof(int32_t), 0)));
        DUET_TRY(failed_in_step(decoder->forward(tokens.data(), cmd.T, static_cast<LogitsMode>(cmd.mode), logits)));
        break;
      case Op::Reset:
        if (decoder) decoder->reset();
        break;
      case Op::End: decoder.reset(); break;
      case Op::Quit: return first_error;
      default: return failed_in_step(make_error("rank ", control.rank(), ": unknown message from rank 0"));
    }
  }
}

}  // namespace duet
