// duet tokenize: print the token ids of a text as a JSON array.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"

namespace duet::cli {
namespace {

struct TokenizeOptions {
  std::string model = kDefaultModel;
  std::string text;
  bool bos = false;
  bool no_special = false;
};

void run(const TokenizeOptions& o) {
  const Tokenizer tokenizer = value_or_fail(load_tokenizer(o.model));
  const std::vector<int32_t> ids = tokenizer.encode(o.text, o.bos, !o.no_special);
  std::printf("[");
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? ", %d" : "%d", ids[i]);
  std::printf("]\n");
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "print the token ids of TEXT as JSON");
  cmd->add_option("-m,--model", options->model, "GGUF file or HF safetensors directory")->capture_default_str();
  cmd->add_option("--text", options->text, "text to tokenize")->required();
  cmd->add_flag("--bos", options->bos, "prepend the BOS token");
  cmd->add_flag("--no-special", options->no_special, "treat special-token text (e.g. <|im_start|>) as plain text");
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
