// HttpServer: the OpenAI-compatible HTTP front of `duet serve`.
//
// Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models,
// POST /tokenize, POST /detokenize, GET /tokenizer_info, GET /health,
// GET /metrics. Handler threads (cpp-httplib's pool, sized so that open
// streams and queued requests cannot starve /health) parse and validate the
// request, tokenize it, submit it to the Engine and format what comes back,
// as one JSON body or as server-sent events. A client that disconnects has
// its request cancelled (connection_probe.h, or a failed write).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "core/result.h"
#include "server/engine.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace duet::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (see HttpServer::port())
  std::string api_key;     // non-empty: /v1/* and the tokenizer routes need "Authorization: Bearer KEY"
  std::string model_id;    // the name /v1/models lists and requests may use
  std::string model_path;  // also accepted as a model name
  int http_threads = 64;   // handler threads
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions options);
  ~HttpServer();

  // Binds the socket; /health answers 503 until attach().
  Status bind();
  int port() const { return port_; }
  // Serves until stop() (call bind() first). Blocks.
  void listen();
  // Ends listen(), also when called before listen() has started its loop.
  void stop();
  // The model is loaded: generation routes go live. Both must outlive the server's use of them.
  void attach(Engine* engine, const Tokenizer* tokenizer);

 private:
  void add_routes();

  ServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  int listen_fd_ = -1;  // the bound socket, to raise cpp-httplib's listen backlog
  std::atomic<Engine*> engine_{nullptr};
  std::atomic<bool> listen_called_{false}, listen_done_{false}, stop_requested_{false};
  const Tokenizer* tokenizer_ = nullptr;
};

}  // namespace duet::server
