// duet tokenize: print the token ids of a text as a JSON array.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/loader.h"

namespace duet::cli {
namespace {

struct TokenizeOptions : LpOptions {
  std::string model = kDefaultModel;
  std::string text;
  bool bos = false;
  bool no_special = false;
};

void run(const TokenizeOptions& o) {
  // LP does not change tokenization, but a plan given here is still checked
  // against the model, as every command does.
  const LpPlan plan = value_or_fail(o.plan());
  if (!plan.empty()) check_or_fail(validate_lp_plan(plan, value_or_fail(load_config(o.model)).n_layers));
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
  options->add_to(*cmd);
  cmd->add_option("--text", options->text, "text to tokenize")->required();
  cmd->add_flag("--bos", options->bos, "prepend the BOS token");
  cmd->add_flag("--no-special", options->no_special, "treat special-token text (e.g. <|im_start|>) as plain text");
  cmd->callback([options] { run(*options); });
}

}  // namespace duet::cli
