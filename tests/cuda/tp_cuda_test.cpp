// Tensor parallelism on the CUDA backend (GPU only; tools/gpu/tp_check.sh runs it).
//   CudaTpOneGpu: N ranks as threads sharing one GPU (HostStagedCommunicator,
//     no graphs), the sharded CudaModel against the unsharded one, with and
//     without LP, for llama / qwen2 / qwen3 shapes.
//   CudaTpNccl (skipped with fewer than 2 GPUs): NCCL all-reduce and broadcast
//     exact on integers, inside a replayed CUDA graph too; the sharded model on
//     one GPU per rank with its decode steps graph-captured, NCCL inside.
//     The ranks of an mpirun job (make_cuda_tp_rank_decoder) as threads, one
//     GPU each, stepped by the leader/follower protocol, against one GPU.
//   CudaTpProcesses (its own process: --gtest_filter='CudaTpProcesses.*', as
//     tools/gpu/tp_check.sh runs it): the --device cuda --tp N decoder, which
//     forks one worker per GPU and so must start before this process touches
//     CUDA, against the one-GPU decoder; the same for the server's batch
//     decoder (each of these two in its own process); and --tp above the GPU
//     count fails.
// Tolerances:
//   kTpRelTol  ||tp - tp1|| / ||tp1|| per logits row. Both runs use the same bf16
//              weights and kernels; the partial sums are added in another order
//              (fp32), and once that flips one bf16 rounding of an activation the
//              difference spreads to bf16 noise: the same cause and bound as
//              kBatchRelTol in cuda_model_test.cpp (repeat runs differ by 2.6e-3).
//   kTieFraction  greedy tokens agree except where tp1's top-2 margin is under
//              this fraction of the logits' rms.
#include <gtest/gtest.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <thread>

#include "backends/cuda/cuda_batch_decoder.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_model.h"
#include "backends/cuda/cuda_tp_decoder.h"
#include "model/lp_merge.h"
#include "model/tp_shard.h"
#include "parallel/host_staged_communicator.h"
#include "parallel/in_process.h"
#include "parallel/nccl_communicator.h"
#include "parallel/p2p_all_reduce.h"
#include "runtime/tp_leader.h"
#include "test_support.h"

namespace duet {
namespace {

constexpr double kTpRelTol = 5e-3;
constexpr double kTieFraction = 0.03;

ModelConfig config_for(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.n_layers = 4;
  c.dim = 256;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.ffn_dim = 768;  // 768 / 4 ranks = 192, a multiple of 8 as the CUDA backend needs
  c.vocab_size = 1000;
  c.max_context = 256;
  c.rope_theta = 10000.0f;
  if (arch == Arch::Llama) c.rope_style = RopeStyle::Interleaved;
  if (arch == Arch::Qwen2) {
    c.qkv_bias = true;
    c.tied_embeddings = true;
  }
  if (arch == Arch::Qwen3) {
    c.qk_norm = true;
    c.head_dim = 128;  // H * Dh != D
  }
  return c;
}

ModelWeights weights_for(Arch arch, const std::string& pairs) {
  ModelWeights w = test::rounded_to_bf16(test::random_weights(config_for(arch), 17));
  auto merged = apply_lp_plan(std::move(w), pairs.empty() ? LpPlan{} : *parse_lp_pairs(pairs));
  EXPECT_TRUE(merged.ok()) << merged.message();
  return std::move(merged).value();
}

double rel_l2(const float* a, const float* ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    if (std::isnan(a[i])) return INFINITY;
    num += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

int32_t top1(const float* x, int n) { return static_cast<int32_t>(std::max_element(x, x + n) - x); }

double top2_margin_over_rms(const float* x, int n) {
  std::vector<float> v(x, x + n);
  double ss = 0;
  for (float f : v) ss += static_cast<double>(f) * f;
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  return (v[0] - v[1]) / std::sqrt(ss / n);
}

std::unique_ptr<CudaModel> make_model(const ModelWeights& w, bool graphs) {
  CudaModelOptions o;
  o.max_context = 64;
  o.max_prefill = 32;
  o.use_graphs = graphs;
  auto m = CudaModel::create(w, o);
  EXPECT_TRUE(m.ok()) << m.message();
  return m.ok() ? std::move(m).value() : nullptr;
}

// Prompt (all rows) then `steps` decode steps feeding `feed[s]`; returns every logits row.
std::vector<float> run_steps(CudaModel& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& feed) {
  std::vector<float> all, logits;
  EXPECT_TRUE(m.prefill(0, prompt.data(), static_cast<int>(prompt.size()), LogitsMode::All, all).ok());
  for (int32_t t : feed) {
    const Status s = m.decode(&t, 1, logits);
    EXPECT_TRUE(s.ok()) << s.message();
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// tp1's greedy continuation: the tokens every run is fed, so that all runs see the same inputs.
std::vector<int32_t> greedy_feed(CudaModel& m, const std::vector<int32_t>& prompt, int steps, int V) {
  std::vector<float> logits;
  EXPECT_TRUE(m.prefill(0, prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, logits).ok());
  std::vector<int32_t> feed;
  for (int s = 0; s < steps; ++s) {
    feed.push_back(top1(logits.data(), V));
    EXPECT_TRUE(m.decode(&feed.back(), 1, logits).ok());
  }
  m.reset(0);
  return feed;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, int V, const std::string& label) {
  ASSERT_EQ(got.size(), ref.size()) << label;
  for (size_t r = 0; r < ref.size() / V; ++r) {
    const float* a = got.data() + r * V;
    const float* b = ref.data() + r * V;
    EXPECT_LT(rel_l2(a, b, V), kTpRelTol) << label << " row " << r;
    if (top2_margin_over_rms(b, V) >= kTieFraction) EXPECT_EQ(top1(a, V), top1(b, V)) << label << " row " << r;
  }
}

struct TpCase {
  Arch arch;
  std::string pairs;
};

class CudaTpOneGpu : public ::testing::TestWithParam<TpCase> {};

TEST_P(CudaTpOneGpu, ShardedRanksMatchOneRank) {
  const TpCase& c = GetParam();
  const ModelWeights w = weights_for(c.arch, c.pairs);
  const int V = w.config.vocab_size;
  const std::vector<int32_t> prompt = {3, 141, 59, 265, 358, 979, 323, 846, 264, 338, 327, 950, 288, 419, 716, 939, 937};
  auto single = make_model(w, /*graphs=*/false);
  ASSERT_TRUE(single);
  const std::vector<int32_t> feed = greedy_feed(*single, prompt, 6, V);
  const std::vector<float> ref = run_steps(*single, prompt, feed);
  for (int tp : {2, 4}) {
    InProcessGroup group(tp);
    std::vector<std::vector<float>> out(tp);
    std::vector<std::thread> ranks;
    for (int r = 0; r < tp; ++r) {
      ranks.emplace_back([&, r] {
        auto shard = shard_weights(w, r, tp);
        ASSERT_TRUE(shard.ok()) << shard.message();
        auto model = make_model(*shard, /*graphs=*/false);
        ASSERT_TRUE(model);
        auto comm = make_host_staged_communicator(group.rank(r), model->stream());
        ASSERT_TRUE(model->set_communicator(comm.get()).ok());
        out[r] = run_steps(*model, prompt, feed);
      });
    }
    for (std::thread& t : ranks) t.join();
    const std::string label = std::string(arch_name(c.arch)) + " pairs '" + c.pairs + "' tp " + std::to_string(tp);
    expect_close(out[0], ref, V, label);
    for (int r = 1; r < tp; ++r) EXPECT_EQ(out[r], out[0]) << label << ": rank " << r << " differs from rank 0";
  }
}

INSTANTIATE_TEST_SUITE_P(Families, CudaTpOneGpu,
                         ::testing::Values(TpCase{Arch::Llama, ""}, TpCase{Arch::Llama, "1"},
                                           TpCase{Arch::Qwen2, ""}, TpCase{Arch::Qwen2, "0,2"},
                                           TpCase{Arch::Qwen3, ""}, TpCase{Arch::Qwen3, "1"}));

int gpu_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

// One thread per GPU, each running fn(rank, comm, stream) on its own GPU with an NCCL communicator.
template <class Fn>
void on_gpus(int n, Fn fn) {
  auto id = make_nccl_id();
  ASSERT_TRUE(id.ok()) << id.message();
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
      cudaStream_t stream = nullptr;
      ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
      auto comm = make_nccl_communicator(*id, r, n, r, stream);
      ASSERT_TRUE(comm.ok()) << comm.message();
      fn(r, **comm, stream);
      cudaStreamDestroy(stream);
    });
  }
  for (std::thread& t : threads) t.join();
}

TEST(CudaTpNccl, AllReduceAndBroadcastAreExactInAndOutOfGraphs) {
  const int n = gpu_count();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs, " << n << " visible";
  for (int64_t count : {1, 19, 576, 4096 * 8 + 3}) {
    on_gpus(n, [&](int r, Communicator& comm, cudaStream_t stream) {
      // Small integers: every order of summation gives the exact sum.
      std::vector<float> host(count);
      for (int64_t i = 0; i < count; ++i) host[i] = static_cast<float>((r + 1) * (i % 97));
      float* dev = nullptr;
      ASSERT_EQ(cudaMalloc(&dev, count * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dev, host.data(), count * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_TRUE(comm.all_reduce_sum(dev, count).ok());
      // The same all-reduce captured in a graph and replayed twice: the sum grows by n each time.
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), cudaSuccess);
      ASSERT_TRUE(comm.all_reduce_sum(dev, count).ok());
      ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
      ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
      ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      std::vector<float> back(count);
      ASSERT_EQ(cudaMemcpyAsync(back.data(), dev, count * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      const float ranks_sum = static_cast<float>(n * (n + 1) / 2);
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_EQ(back[i], ranks_sum * static_cast<float>(i % 97) * n * n) << "rank " << r << " element " << i;
      }
      // Broadcast from the last rank.
      ASSERT_EQ(cudaMemcpy(dev, host.data(), count * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_TRUE(comm.broadcast(dev, count * static_cast<int64_t>(sizeof(float)), n - 1).ok());
      ASSERT_TRUE(comm.barrier().ok());
      ASSERT_EQ(cudaMemcpy(back.data(), dev, count * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
      for (int64_t i = 0; i < count; ++i) ASSERT_EQ(back[i], static_cast<float>(n * (i % 97))) << "rank " << r;
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      cudaFree(dev);
    });
  }
}

// The one-shot P2P all-reduce: exact on integers, replayed in a graph, and the same bits as NCCL on floats.
TEST(CudaTpNccl, OneShotP2pAllReduceMatchesNccl) {
  const int n = gpu_count();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs, " << n << " visible";
  for (int64_t count : {1, 19, 576, 4096 * 8 + 3}) {
    P2pGroup group(n, count);
    std::vector<std::vector<float>> p2p_out(n), nccl_out(n);
    on_gpus(n, [&](int r, Communicator& nccl, cudaStream_t stream) {
      auto p2p = group.join(r, stream);
      ASSERT_TRUE(p2p.ok()) << p2p.message();
      std::vector<float> host(count);
      std::mt19937 rng(100 + r);
      std::normal_distribution<float> normal;
      for (float& v : host) v = normal(rng);
      float *a = nullptr, *b = nullptr;
      ASSERT_EQ(cudaMalloc(&a, count * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&b, count * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(a, host.data(), count * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(b, host.data(), count * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      // Random floats, once each, eagerly: P2P against NCCL (compared after the threads end).
      ASSERT_TRUE((*p2p)->all_reduce_sum(a, count).ok());
      ASSERT_TRUE(nccl.all_reduce_sum(b, count).ok());
      p2p_out[r].resize(count);
      nccl_out[r].resize(count);
      ASSERT_EQ(cudaMemcpyAsync(p2p_out[r].data(), a, count * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
      ASSERT_EQ(cudaMemcpyAsync(nccl_out[r].data(), b, count * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
      // Small integers through three P2P calls captured in one graph: the exact sum times n^2.
      for (int64_t i = 0; i < count; ++i) host[i] = static_cast<float>((r + 1) * (i % 97));
      ASSERT_EQ(cudaMemcpyAsync(a, host.data(), count * sizeof(float), cudaMemcpyHostToDevice, stream), cudaSuccess);
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), cudaSuccess);
      for (int k = 0; k < 3; ++k) ASSERT_TRUE((*p2p)->all_reduce_sum(a, count).ok());
      ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
      ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
      ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      std::vector<float> back(count);
      ASSERT_EQ(cudaMemcpyAsync(back.data(), a, count * sizeof(float), cudaMemcpyDeviceToHost, stream), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      const float ranks_sum = static_cast<float>(n * (n + 1) / 2);
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_EQ(back[i], ranks_sum * static_cast<float>(i % 97) * n * n) << "rank " << r << " element " << i;
      }
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      cudaFree(a);
      cudaFree(b);
    });
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(p2p_out[r], p2p_out[0]) << "P2P: rank " << r << " differs from rank 0";
      // NCCL's summation order is its own: the same up to fp32 rounding.
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_NEAR(p2p_out[r][i], nccl_out[r][i], 1e-5f * (1.0f + std::fabs(nccl_out[r][i]))) << "element " << i;
      }
    }
  }
}

// One GPU per rank, decode graphs with the NCCL all-reduces inside, against tp1 on GPU 0.
TEST(CudaTpNccl, ShardedModelWithGraphsMatchesOneRank) {
  const int n = gpu_count();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs, " << n << " visible";
  for (const std::string pairs : {"", "1"}) {
    const ModelWeights w = weights_for(Arch::Llama, pairs);
    const int V = w.config.vocab_size;
    const std::vector<int32_t> prompt = {3, 141, 59, 265, 358, 979, 323, 846, 264, 338, 327};
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    auto single = make_model(w, /*graphs=*/true);
    ASSERT_TRUE(single);
    const std::vector<int32_t> feed = greedy_feed(*single, prompt, 6, V);
    const std::vector<float> ref = run_steps(*single, prompt, feed);
    single.reset();
    for (int tp : {2, 4}) {
      if (tp > n) continue;
      auto id = make_nccl_id();
      ASSERT_TRUE(id.ok()) << id.message();
      std::vector<std::vector<float>> out(tp);
      std::vector<std::thread> ranks;
      for (int r = 0; r < tp; ++r) {
        ranks.emplace_back([&, r] {
          ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
          auto shard = shard_weights(w, r, tp);
          ASSERT_TRUE(shard.ok()) << shard.message();
          auto model = make_model(*shard, /*graphs=*/true);
          ASSERT_TRUE(model);
          // The collectives ride on the model's stream, so the decode graphs capture them.
          auto comm = make_nccl_communicator(*id, r, tp, r, model->stream());
          ASSERT_TRUE(comm.ok()) << comm.message();
          ASSERT_TRUE(model->set_communicator(comm->get()).ok());
          out[r] = run_steps(*model, prompt, feed);
        });
      }
      for (std::thread& t : ranks) t.join();
      const std::string label = "nccl pairs '" + pairs + "' tp " + std::to_string(tp);
      expect_close(out[0], ref, V, label);
      for (int r = 1; r < tp; ++r) EXPECT_EQ(out[r], out[0]) << label << ": rank " << r << " differs from rank 0";
    }
  }
}

// The ranks of an mpirun job (make_cuda_tp_rank_decoder, each with its own GPU and NCCL joined through the id
// rank 0 broadcasts on the control communicator), here as threads of this process over an InProcessGroup
// control, stepped by runtime/tp_leader.h as under mpirun: against one GPU, prompt, decode steps and a reset.
TEST(CudaTpNccl, RankDecodersOfAnMpiJobMatchOneGpu) {
  const int n = gpu_count();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs, " << n << " visible";
  const int tp = n >= 4 ? 4 : 2;
  const ModelWeights w = weights_for(Arch::Qwen2, "0,2");
  const int V = w.config.vocab_size;
  const std::vector<int32_t> prompt = {3, 141, 59, 265, 358, 979, 323, 846, 264, 338, 327};
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  auto single = make_cuda_decoder(w, 64);
  ASSERT_TRUE(single.ok()) << single.message();
  InProcessGroup control(tp);
  auto factory = [&](int r) -> RankDecoderFactory {
    return [&, r](int capacity) { return make_cuda_tp_rank_decoder(w, capacity, r, control.rank(r)); };
  };
  std::vector<std::thread> followers;
  std::vector<Status> follower_status(tp);
  for (int r = 1; r < tp; ++r) {
    followers.emplace_back([&, r] {
      bool step_failed = false;
      follower_status[r] = follow_tp_leader(control.rank(r), factory(r), &step_failed);
    });
  }
  {
    TpLeader leader(control.rank(0));
    auto sharded = leader.start(64, factory(0));
    ASSERT_TRUE(sharded.ok()) << sharded.message();
    EXPECT_NE((*sharded)->device_name().find("a process each"), std::string::npos);
    std::vector<float> ref, got;
    ASSERT_TRUE((*single)->forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::All, ref).ok());
    ASSERT_TRUE((*sharded)->forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::All, got).ok());
    expect_close(got, ref, V, "prompt, tp " + std::to_string(tp));
    int32_t token = top1(ref.data() + ref.size() - V, V);
    for (int step = 0; step < 8; ++step) {
      ASSERT_TRUE((*single)->forward(&token, 1, LogitsMode::Last, ref).ok());
      const Status s = (*sharded)->forward(&token, 1, LogitsMode::Last, got);
      ASSERT_TRUE(s.ok()) << s.message();
      expect_close(got, ref, V, "decode step " + std::to_string(step));
      token = top1(ref.data(), V);
    }
    (*sharded)->reset();
    ASSERT_TRUE((*sharded)->forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, got).ok());
    EXPECT_EQ((*sharded)->position(), static_cast<int>(prompt.size()));
    sharded->reset();
    EXPECT_TRUE(leader.quit().ok());
  }
  for (std::thread& t : followers) t.join();
  for (int r = 1; r < tp; ++r) EXPECT_TRUE(follower_status[r].ok()) << follower_status[r].message();
}

// GPUs from the driver's /proc entries: counting them through CUDA would start CUDA in this process,
// and the workers are forked from it.
int gpus_without_cuda() {
  std::error_code ec;
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    (void)e;
    ++n;
  }
  return n;
}

TEST(CudaTpProcesses, WorkerProcessesMatchOneGpu) {
  const int n = gpus_without_cuda();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs, " << n << " in /proc/driver/nvidia/gpus";
  const int tp = n >= 4 ? 4 : 2;
  const ModelWeights w = weights_for(Arch::Qwen2, "0,2");
  const int V = w.config.vocab_size;
  const std::vector<int32_t> prompt = {3, 141, 59, 265, 358, 979, 323, 846, 264, 338, 327};
  auto sharded = make_cuda_tp_decoder(w, 64, tp);  // forks before CUDA starts here
  ASSERT_TRUE(sharded.ok()) << sharded.message();
  auto single = make_cuda_decoder(w, 64);
  ASSERT_TRUE(single.ok()) << single.message();
  std::vector<float> ref, got;
  ASSERT_TRUE((*single)->forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::All, ref).ok());
  ASSERT_TRUE((*sharded)->forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::All, got).ok());
  expect_close(got, ref, V, "prompt, tp " + std::to_string(tp));
  int32_t token = top1(ref.data() + ref.size() - V, V);
  for (int step = 0; step < 8; ++step) {
    ASSERT_TRUE((*single)->forward(&token, 1, LogitsMode::Last, ref).ok());
    const Status s = (*sharded)->forward(&token, 1, LogitsMode::Last, got);
    ASSERT_TRUE(s.ok()) << s.message();
    expect_close(got, ref, V, "decode step " + std::to_string(step));
    token = top1(ref.data(), V);
  }
  // reset() reaches the workers: the same prompt again gives the same logits.
  (*sharded)->reset();
  std::vector<float> again;
  ASSERT_TRUE((*sharded)->forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, again).ok());
  EXPECT_EQ((*sharded)->position(), static_cast<int>(prompt.size()));
}

// The server's batch decoder over worker processes (duet serve --device cuda --tp N) against one GPU's: three
// slots, prompts prefilled (one in two chunks), decode steps of slots {0, 2} then {2, 1, 0}, a slot reset.
// Run in its own process (tp_check.sh does): it forks before CUDA starts here.
TEST(CudaTpProcesses, BatchWorkerProcessesMatchOneGpu) {
  const int n = gpus_without_cuda();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs, " << n << " in /proc/driver/nvidia/gpus";
  const int tp = n >= 4 ? 4 : 2;
  const ModelWeights w = weights_for(Arch::Qwen2, "0,2");
  const int V = w.config.vocab_size;
  auto sharded = make_cuda_tp_batch_decoder(w, 3, 64, 1024, tp);  // forks before CUDA starts here
  ASSERT_TRUE(sharded.ok()) << sharded.message();
  auto single = make_cuda_batch_decoder(w, 3, 64, 1024);
  ASSERT_TRUE(single.ok()) << single.message();
  EXPECT_EQ((*sharded)->slots(), 3);
  const std::vector<std::vector<int32_t>> prompts = {{3, 141, 59, 265, 358}, {979, 323}, {846, 264, 338, 327, 11, 7, 5}};
  std::vector<int32_t> next(3);
  std::vector<float> ref, got;
  auto prefill = [&](int slot, const int32_t* tokens, int T, const std::string& label) {
    ASSERT_TRUE((*single)->prefill(slot, tokens, T, LogitsMode::Last, ref).ok());
    const Status s = (*sharded)->prefill(slot, tokens, T, LogitsMode::Last, got);
    ASSERT_TRUE(s.ok()) << s.message();
    expect_close(got, ref, V, label);
    next[slot] = top1(ref.data(), V);
  };
  auto decode = [&](const std::vector<int32_t>& slots, const std::string& label) {
    std::vector<int32_t> tokens;
    for (int32_t s : slots) tokens.push_back(next[s]);
    const int B = static_cast<int>(slots.size());
    ASSERT_TRUE((*single)->decode(slots.data(), tokens.data(), B, ref).ok());
    const Status s = (*sharded)->decode(slots.data(), tokens.data(), B, got);
    ASSERT_TRUE(s.ok()) << s.message();
    expect_close(got, ref, V, label);
    for (int b = 0; b < B; ++b) next[slots[b]] = top1(ref.data() + static_cast<size_t>(b) * V, V);
  };
  prefill(0, prompts[0].data(), 5, "prefill slot 0");
  prefill(1, prompts[1].data(), 1, "prefill slot 1, chunk 1");
  prefill(1, prompts[1].data() + 1, 1, "prefill slot 1, chunk 2");
  prefill(2, prompts[2].data(), 7, "prefill slot 2");
  for (int i = 0; i < 4; ++i) decode({0, 2}, "decode {0, 2} step " + std::to_string(i));
  (*single)->reset(2);
  (*sharded)->reset(2);
  EXPECT_EQ((*sharded)->length(2), 0);
  prefill(2, prompts[0].data(), 3, "prefill slot 2 after its reset");
  for (int i = 0; i < 4; ++i) decode({2, 1, 0}, "decode {2, 1, 0} step " + std::to_string(i));
  // A bad step is refused on rank 0 and the workers stay in step.
  const int32_t bad_slot = 3, token = 1;
  EXPECT_FALSE((*sharded)->decode(&bad_slot, &token, 1, got).ok());
  decode({1}, "decode {1} after a refused step");
}

TEST(CudaTpProcesses, MoreRanksThanGpusIsAnError) {
  const int n = gpus_without_cuda();
  const ModelWeights w = weights_for(Arch::Llama, "");  // 4 heads: --tp 4 splits them
  if (n >= 4) GTEST_SKIP() << n << " GPUs: --tp 4 fits";
  auto d = make_cuda_tp_decoder(w, 64, 4);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.message().find("--tp 4 needs 4 GPUs"), std::string::npos) << d.message();
}

}  // namespace
}  // namespace duet
