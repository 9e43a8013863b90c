// duet: Layer-Parallel inference for decoder-only LLMs. One binary, one
// subcommand per job; see `duet --help` and docs/usage.md.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"duet: LLM inference with Layer Parallelism (LP)"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  duet::cli::add_run_command(app);
  duet::cli::add_logits_command(app);
  duet::cli::add_tokenize_command(app);
  duet::cli::add_ppl_command(app);
  duet::cli::add_info_command(app);
  duet::cli::add_demo_command(app);
  duet::cli::add_bench_command(app);
  duet::cli::add_eval_command(app);
  duet::cli::add_search_command(app);
  duet::cli::add_report_command(app);
  duet::cli::add_heal_command(app);
  duet::cli::add_export_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    // Allocation failures and the like: still one line and a non-zero exit.
    std::fprintf(stderr, "duet: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
