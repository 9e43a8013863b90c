// Each subcommand registers itself on the root app; its callback runs the
// command and throws CLI::RuntimeError(code) to end with a non-zero exit.
#pragma once

#include <CLI/CLI.hpp>

namespace duet::cli {

void add_run_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_ppl_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_search_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_heal_command(CLI::App& app);
void add_export_command(CLI::App& app);

}  // namespace duet::cli
