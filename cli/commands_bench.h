// `duet bench`: decode/prefill speed of baseline and LP plans on the GPU (cli/bench.cpp).
#pragma once

#include <CLI/CLI.hpp>

namespace duet::cli {

// Registers `bench`. In a build without CUDA the command prints one error line and exits 1.
void add_bench_command(CLI::App& app);

}  // namespace duet::cli
