// duet serve: an OpenAI-compatible HTTP server with continuous batching
// (src/server/). The socket is bound first, so /health answers 503 while the
// model loads; SIGINT or SIGTERM stops the server.
#include <pthread.h>

#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/loader.h"
#include "model/tp_shard.h"
#include "server/engine.h"
#include "server/http_server.h"

namespace duet::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  server::ServerOptions http;
  int slots = 0;  // 0: 8 on the CPU, 64 on the GPU
  int queue = 64;
  int prefill_chunk = 512;
  std::string alias;
};

std::string model_id(const ServeOptions& o) {
  if (!o.alias.empty()) return o.alias;
  std::filesystem::path p(o.model.model);
  if (p.filename().empty()) p = p.parent_path();  // "dir/"
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

void serve(ServeOptions o) {
  // Threads started from here on (HTTP pool, engine loop, OpenMP) leave SIGINT/SIGTERM to sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that vanished mid-write is an error return, not a signal

  // What can be checked without the weights fails before the port is taken (one error line).
  const ModelConfig config = value_or_fail(load_config(o.model.model));
  value_or_fail(o.model.plan());
  if (o.model.tp != 1) {
    if (std::getenv("OMPI_COMM_WORLD_SIZE")) fail("duet serve runs its --tp ranks in one process; start it without mpirun");
    value_or_fail(tp_shard_config(config, o.model.tp));  // the layers' own widths are checked once loaded
  }
  const int capacity = o.model.ctx > 0 ? o.model.ctx : std::min(config.max_context, 2048);
  if (capacity > config.max_context || capacity < 2) {
    fail(str_cat("--ctx ", capacity, " is outside [2, ", config.max_context, "] (the model's context)"));
  }
  const int slots = o.slots > 0 ? o.slots : (o.model.device == "cuda" ? 64 : 8);
  o.http.model_id = model_id(o);
  o.http.model_path = o.model.model;
  // Every running, queued or keep-alive connection holds a thread; the spare ones keep /health answering.
  o.http.http_threads = slots + o.queue + 16;
  server::HttpServer http(o.http);
  check_or_fail(http.bind());
  std::thread listener([&] { http.listen(); });
  std::fprintf(stderr, "duet: listening on http://%s:%d (loading %s)\n", o.http.host.c_str(), http.port(),
               o.model.model.c_str());

  auto stop_listener = [&] {
    http.stop();
    listener.join();
  };
  Result<LoadedModel> loaded = load(o.model);
  if (!loaded.ok()) {
    stop_listener();
    fail(loaded.message());
  }
  LoadedModel& m = loaded.value();
  Result<std::unique_ptr<BatchDecoder>> decoder =
      make_batch_decoder(m.weights, o.model.device, slots, capacity, o.model.tp, o.model.arithmetic());
  if (!decoder.ok()) {
    stop_listener();
    fail(decoder.message());
  }
  std::vector<bool> end_of_generation(m.tokenizer.vocab_size());
  for (int32_t t = 0; t < m.tokenizer.vocab_size(); ++t) end_of_generation[t] = m.tokenizer.is_end_of_generation(t);
  server::EngineOptions engine_options;
  engine_options.max_waiting = o.queue;
  engine_options.prefill_chunk = o.prefill_chunk;
  server::Engine engine(std::move(decoder).value(), std::move(end_of_generation), engine_options);
  http.attach(&engine, &m.tokenizer);
  std::fprintf(stderr, "duet: serving '%s' on http://%s:%d (%s, %d slots x %d positions, LP pairs: %s)\n",
               o.http.model_id.c_str(), o.http.host.c_str(), http.port(), engine.device_name().c_str(), slots, capacity,
               m.plan.describe().c_str());

  int signal = 0;
  sigwait(&stop_signals, &signal);
  std::fprintf(stderr, "duet: stopping (signal %d)\n", signal);
  stop_listener();
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "serve the model over an OpenAI-compatible HTTP API (see docs/server.md)");
  options->model.add_to(*cmd);
  options->model.add_tp_to(*cmd);
  options->model.add_cpu_math_to(*cmd);
  cmd->add_option("--host", options->http.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", options->http.port, "port to listen on (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--slots", options->slots, "sequences decoded together (default: 8 on cpu, 64 on cuda)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--queue", options->queue, "requests that may wait beyond the free slots; more get HTTP 429")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("--prefill-chunk", options->prefill_chunk, "prompt tokens run per engine step")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--api-key", options->http.api_key, "require 'Authorization: Bearer KEY' on the API routes");
  cmd->add_option("--alias", options->alias, "model name to serve (default: the model file's name)");
  cmd->callback([options] { serve(*options); });
}

}  // namespace duet::cli
