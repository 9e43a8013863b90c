// Running the duet binary from tests: its exit code and output, and the
// one-line error every bad input must give.
#pragma once

#include <string>

namespace duet::test {

struct Outcome {
  int exit_code = -1;
  std::string out, err;
};

// Runs `duet ARGS` through the shell (so ARGS may redirect stdin), in directory `cwd` when given, with a time
// limit, so that a hang fails the test instead of the suite.
Outcome run_duet(const std::string& args, const std::string& cwd = "", int limit_seconds = 120);

// Expects exit code 1 and exactly one stderr line "duet: error: ..." holding `fragment`.
void expect_one_line_error(const Outcome& o, const std::string& fragment);

}  // namespace duet::test
