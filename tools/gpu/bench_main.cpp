// duet_bench: `duet bench` as its own binary, for GPU machines where only the
// CUDA targets are built (tools/gpu/run_gpu.sh). Usage: duet_bench bench [options].
#include <CLI/CLI.hpp>

#include "cli/commands_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"duet bench (standalone)"};
  app.require_subcommand(1);
  duet::cli::add_bench_command(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
