// run_duet and expect_one_line_error (cli_support.h).
#include "cli_support.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "test_support.h"

namespace duet::test {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

Outcome run_duet(const std::string& args, const std::string& cwd, int limit_seconds) {
  const std::string dir = temp_dir("cli");
  const std::string cmd = (cwd.empty() ? "" : "cd '" + cwd + "' && ") + "timeout " + std::to_string(limit_seconds) +
                          " " + std::string(DUET_BINARY) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int status = std::system(cmd.c_str());
  Outcome o;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = slurp(dir + "/out");
  o.err = slurp(dir + "/err");
  return o;
}

void expect_one_line_error(const Outcome& o, const std::string& fragment) {
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(o.err.rfind("duet: error: ", 0), 0u) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  EXPECT_NE(o.err.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << o.err;
}

}  // namespace duet::test
