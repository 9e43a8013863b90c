// duet chat: an interactive conversation in the terminal on the server's
// engine (one slot) and the model's chat template. The history is kept across
// turns; /reset forgets it, /quit (or end of input) leaves; Ctrl-C stops the
// answer being written, not the program.
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "server/engine.h"
#include "server/text_stream.h"

namespace duet::cli {
namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_interrupt(int) { g_interrupted.store(true); }

struct ChatOptions {
  ModelOptions model;
  int max_new_tokens = 512;
  SamplingParams sampling;
  std::string system;
};

// Streams one answer to stdout; returns its text (cut short by Ctrl-C).
std::string answer(server::Engine& engine, const Tokenizer& tok, server::GenerationRequest request) {
  std::shared_ptr<server::RequestHandle> handle = value_or_fail(engine.submit(std::move(request)));
  server::TextStream text({});
  bool done = false;
  while (!done) {
    if (g_interrupted.exchange(false)) {
      handle->cancel();
      std::printf(" [stopped]");
    }
    std::vector<server::EngineEvent> events;
    handle->wait_events(events, std::chrono::milliseconds(50));
    for (server::EngineEvent& e : events) {
      std::string out;
      if (e.kind == server::EngineEvent::Kind::kToken && !e.end_of_generation) out = text.push(tok.token_text(e.token));
      if (e.kind == server::EngineEvent::Kind::kFinished) {
        out = text.flush();
        done = true;
        if (e.finish == server::FinishReason::kError) std::fprintf(stderr, "\nduet: error: %s", e.error.c_str());
      }
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
    }
  }
  std::printf("\n");
  return text.text();
}

void chat(const ChatOptions& o) {
  LoadedModel m = value_or_fail(load(o.model));
  const int model_context = m.weights.config.max_context;
  const int capacity = o.model.ctx > 0 ? o.model.ctx : std::min(model_context, 4096);
  if (capacity > model_context || capacity < 2) fail(str_cat("--ctx ", capacity, " is outside [2, ", model_context, "]"));
  auto decoder = value_or_fail(make_batch_decoder(m.weights, o.model.device, 1, capacity, 1, o.model.arithmetic()));
  std::vector<bool> end_of_generation(m.tokenizer.vocab_size());
  for (int32_t t = 0; t < m.tokenizer.vocab_size(); ++t) end_of_generation[t] = m.tokenizer.is_end_of_generation(t);

  // The engine's threads must not take Ctrl-C: it has to interrupt this thread's read.
  sigset_t interrupt;
  sigemptyset(&interrupt);
  sigaddset(&interrupt, SIGINT);
  pthread_sigmask(SIG_BLOCK, &interrupt, nullptr);
  server::Engine engine(std::move(decoder), std::move(end_of_generation), server::EngineOptions{});
  pthread_sigmask(SIG_UNBLOCK, &interrupt, nullptr);
  struct sigaction action {};
  action.sa_handler = on_interrupt;  // no SA_RESTART: a read in progress returns
  sigaction(SIGINT, &action, nullptr);

  std::vector<ChatMessage> history;
  if (!o.system.empty()) history.push_back({"system", o.system});
  std::fprintf(stderr, "duet chat: %s on %s (/reset clears the conversation, /quit leaves, Ctrl-C stops an answer)\n",
               o.model.model.c_str(), engine.device_name().c_str());
  std::string line;
  while (true) {
    std::printf("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) {
      if (g_interrupted.exchange(false) && !std::cin.eof()) {  // Ctrl-C at the prompt: a fresh prompt
        std::cin.clear();
        std::printf("\n");
        continue;
      }
      break;
    }
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      history.resize(o.system.empty() ? 0 : 1);
      std::printf("(conversation cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line});
    Result<std::string> text = m.tokenizer.apply_chat_template(history, true);
    if (!text.ok()) fail(text.message());
    server::GenerationRequest request;
    request.prompt = m.tokenizer.encode(text.value(), m.tokenizer.add_bos_default(), true);
    const int room = capacity - static_cast<int>(request.prompt.size());
    if (room < 1) {
      history.pop_back();
      std::printf("(the conversation fills the context of %d tokens; /reset to start again)\n", capacity);
      continue;
    }
    request.max_tokens = std::min(o.max_new_tokens, room);
    request.sampling = o.sampling;
    history.push_back({"assistant", answer(engine, m.tokenizer, std::move(request))});
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto options = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand("chat", "talk with the model in the terminal (its chat template, streaming)");
  options->model.add_to(*cmd);
  options->model.add_cpu_math_to(*cmd);
  cmd->add_option("-n,--max-tokens", options->max_new_tokens, "most tokens per answer")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temp", options->sampling.temperature, "temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", options->sampling.top_k, "sample among the k most likely tokens; 0 = all")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", options->sampling.top_p, "nucleus sampling mass")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", options->sampling.seed, "random seed for sampling")->capture_default_str();
  cmd->add_option("--system", options->system, "system message that opens the conversation");
  cmd->callback([options] { chat(*options); });
}

}  // namespace duet::cli
