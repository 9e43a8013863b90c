// The protocol of ranks as processes (runtime/tp_leader.h), with the ranks as
// threads over an InProcessGroup so that it runs in the unit suite: rank 0's
// steps reach the followers and give the bits of the in-process TP decoder;
// bad input is refused on rank 0 before any follower sees it; a rank that
// cannot start makes every rank's start fail; a step that fails midway is
// reported as such. tests/tp_mpi_test.cpp runs the same under mpirun.
#include <gtest/gtest.h>

#include <thread>

#include "parallel/in_process.h"
#include "runtime/sampler.h"
#include "runtime/tp_leader.h"
#include "test_support.h"

namespace duet {
namespace {

// Runs `lead` on rank 0 and follow_tp_leader on ranks 1..n-1 (each with `make_rank`), on threads.
struct Followers {
  std::vector<Status> status;     // [n] follow_tp_leader's, rank 0's unused
  std::vector<char> step_failed;  // [n]
};

template <class Lead>
Followers with_followers(InProcessGroup& group, const std::function<RankDecoderFactory(int rank)>& factory, Lead lead) {
  const int n = group.size();
  Followers f{std::vector<Status>(n), std::vector<char>(n, 0)};
  std::vector<std::thread> threads;
  for (int r = 1; r < n; ++r) {
    threads.emplace_back([&, r] {
      bool failed = false;
      f.status[r] = follow_tp_leader(group.rank(r), factory(r), &failed);
      f.step_failed[r] = failed;
    });
  }
  lead(group.rank(0), factory(0));
  for (std::thread& t : threads) t.join();
  return f;
}

// Prefill, then greedy decode steps; every logit of every step.
std::vector<float> greedy_logits(Decoder& d, const std::vector<int32_t>& prompt, int steps) {
  std::vector<float> all, logits;
  EXPECT_TRUE(d.forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::All, logits).ok());
  all = logits;
  const int V = d.vocab_size();
  for (int s = 0; s < steps; ++s) {
    int32_t next = argmax(logits.data() + logits.size() - V, V);
    EXPECT_TRUE(d.forward(&next, 1, LogitsMode::Last, logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(TpLeader, FollowersRunRankZerosStepsWithTheBitsOfRanksAsThreads) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 31);
  const std::vector<int32_t> prompt = {3, 17, 42, 5, 99, 12, 7};
  for (int tp : {2, 4}) {
    auto threads = make_cpu_tp_decoder(w, 32, tp);
    ASSERT_TRUE(threads.ok()) << threads.message();
    const std::vector<float> expected = greedy_logits(**threads, prompt, 5);
    InProcessGroup group(tp);
    auto factory = [&](int r) -> RankDecoderFactory {
      return [&, r](int capacity) { return make_cpu_tp_rank_decoder(w, capacity, group.rank(r)); };
    };
    std::vector<float> first, second;
    const Followers f = with_followers(group, factory, [&](Communicator& control, const RankDecoderFactory& mine) {
      TpLeader leader(control);
      {
        auto d = leader.start(32, mine);
        ASSERT_TRUE(d.ok()) << d.message();
        EXPECT_EQ((*d)->capacity(), 32);
        first = greedy_logits(**d, prompt, 5);
        // A reset reaches every rank: the same run again from position 0.
        (*d)->reset();
        EXPECT_EQ((*d)->position(), 0);
        second = greedy_logits(**d, prompt, 5);
        // One decoder at a time.
        EXPECT_FALSE(leader.start(32, mine).ok());
      }
      // A second decoder after the first ended (as eval's or ppl's would).
      auto again = leader.start(16, mine);
      ASSERT_TRUE(again.ok()) << again.message();
      std::vector<float> logits;
      EXPECT_TRUE((*again)->forward(prompt.data(), 3, LogitsMode::Last, logits).ok());
      EXPECT_EQ(logits.size(), static_cast<size_t>(w.config.vocab_size));
      again->reset();
      EXPECT_TRUE(leader.quit().ok());
    });
    for (int r = 1; r < tp; ++r) {
      EXPECT_TRUE(f.status[r].ok()) << f.status[r].message();
      EXPECT_FALSE(f.step_failed[r]);
    }
    EXPECT_EQ(first, expected) << "tp " << tp;  // bitwise
    EXPECT_EQ(second, expected) << "tp " << tp;
  }
}

TEST(TpLeader, BadStepsFailOnRankZeroAndTheRanksGoOn) {
  const ModelWeights w = test::random_weights(test::tiny_qwen2_config(), 32);
  InProcessGroup group(2);
  auto factory = [&](int r) -> RankDecoderFactory {
    return [&, r](int capacity) { return make_cpu_tp_rank_decoder(w, capacity, group.rank(r)); };
  };
  const Followers f = with_followers(group, factory, [&](Communicator& control, const RankDecoderFactory& mine) {
    TpLeader leader(control);
    auto d = leader.start(4, mine);
    ASSERT_TRUE(d.ok()) << d.message();
    std::vector<float> logits;
    const int32_t bad_token = w.config.vocab_size, five[5] = {1, 2, 3, 4, 5};
    const Status out_of_vocab = (*d)->forward(&bad_token, 1, LogitsMode::Last, logits);
    EXPECT_NE(out_of_vocab.message().find("outside the vocabulary"), std::string::npos) << out_of_vocab.message();
    const Status too_long = (*d)->forward(five, 5, LogitsMode::Last, logits);
    EXPECT_NE(too_long.message().find("do not fit the context of 4"), std::string::npos) << too_long.message();
    EXPECT_FALSE((*d)->forward(five, 0, LogitsMode::Last, logits).ok());
    // The followers saw none of it: the next good step runs on both ranks.
    EXPECT_TRUE((*d)->forward(five, 4, LogitsMode::Last, logits).ok());
    EXPECT_EQ((*d)->position(), 4);
    EXPECT_FALSE(leader.broken());
    d->reset();
    EXPECT_TRUE(leader.quit().ok());
  });
  EXPECT_TRUE(f.status[1].ok()) << f.status[1].message();
}

// A decoder without collectives that fails every forward: a device failure mid-step.
class FailingDecoder final : public Decoder {
 public:
  Status forward(const int32_t*, int, LogitsMode, std::vector<float>&) override { return make_error("device lost"); }
  void reset() override {}
  int position() const override { return 0; }
  int capacity() const override { return 8; }
  int vocab_size() const override { return 10; }
  std::string device_name() const override { return "failing"; }
};

TEST(TpLeader, ARankThatCannotStartFailsEveryRanksStart) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 33);
  InProcessGroup group(3);
  // Rank 2 cannot start its first decoder (as when its host lacks the model file); its second start works.
  int rank2_starts = 0;
  auto factory = [&](int r) -> RankDecoderFactory {
    return [&, r](int capacity) -> Result<std::unique_ptr<Decoder>> {
      if (r == 2 && rank2_starts++ == 0) return make_error("model 'x.gguf' does not exist");
      return make_cpu_tp_decoder(w, capacity, 1);  // no collectives: only the protocol is under test
    };
  };
  const Followers f = with_followers(group, factory, [&](Communicator& control, const RankDecoderFactory& mine) {
    TpLeader leader(control);
    auto failed = leader.start(8, mine);
    ASSERT_FALSE(failed.ok());
    EXPECT_EQ(failed.message(), "tensor-parallel rank 2 of 3 could not start (its own error names why)");
    auto d = leader.start(8, mine);
    ASSERT_TRUE(d.ok()) << d.message();
    d->reset();
    EXPECT_TRUE(leader.quit().ok());
  });
  EXPECT_TRUE(f.status[1].ok()) << f.status[1].message();
  EXPECT_EQ(f.status[2].message(), "model 'x.gguf' does not exist");  // its own error, after rank 0's quit
  EXPECT_FALSE(f.step_failed[2]);
}

TEST(TpLeader, AStepThatFailsMidwayIsReportedAsSuch) {
  InProcessGroup group(2);
  auto factory = [](int) -> RankDecoderFactory {
    return [](int) -> Result<std::unique_ptr<Decoder>> { return std::unique_ptr<Decoder>(new FailingDecoder); };
  };
  const Followers f = with_followers(group, factory, [&](Communicator& control, const RankDecoderFactory& mine) {
    TpLeader leader(control);
    auto d = leader.start(8, mine);
    ASSERT_TRUE(d.ok()) << d.message();
    std::vector<float> logits;
    const int32_t token = 1;
    EXPECT_EQ((*d)->forward(&token, 1, LogitsMode::Last, logits).message(), "device lost");
    EXPECT_TRUE(leader.broken());  // the job must be aborted, not ended: no End, no Quit is sent
    EXPECT_FALSE(leader.start(8, mine).ok());
    d->reset();
    EXPECT_FALSE(leader.quit().ok());
  });
  EXPECT_EQ(f.status[1].message(), "device lost");
  EXPECT_TRUE(f.step_failed[1]);
}

}  // namespace
}  // namespace duet
