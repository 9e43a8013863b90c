// duet run's prompt from a file or standard input, and the bad inputs of
// duet serve / duet chat / duet run that end before any serving: exit code 1
// and one "duet: error: ..." line naming the problem.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include <sys/wait.h>

#include <fstream>

#include "cli_support.h"
#include "test_support.h"

namespace duet {
namespace {

using test::Outcome;
using test::expect_one_line_error;
using test::run_duet;

class ServeCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::temp_dir("cli_serve_models"));
    tiny_ = new std::string(test::write_gguf_checkpoint(test::random_weights(test::tiny_llama_config(), 11),
                                                        *dir_ + "/tiny.gguf"));
  }
  static std::string* dir_;
  static std::string* tiny_;
};
std::string* ServeCliTest::dir_ = nullptr;
std::string* ServeCliTest::tiny_ = nullptr;

TEST_F(ServeCliTest, RunReadsThePromptFromAFileOrStandardInput) {
  const std::string prompt_file = *dir_ + "/prompt.txt";
  std::ofstream(prompt_file) << "hello there";
  const std::string args = "run -m " + *tiny_ + " -n 6 --temp 0 ";
  const Outcome direct = run_duet(args + "'hello there'");
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  const Outcome from_file = run_duet(args + "-f " + prompt_file);
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  const Outcome from_stdin = run_duet(args + "-f - < " + prompt_file);
  ASSERT_EQ(from_stdin.exit_code, 0) << from_stdin.err;
  EXPECT_EQ(from_file.out, direct.out);
  EXPECT_EQ(from_stdin.out, direct.out);
  EXPECT_FALSE(direct.out.empty());
}

TEST_F(ServeCliTest, RunPromptErrors) {
  expect_one_line_error(run_duet("run -m " + *tiny_ + " -n 2"), "either as an argument");
  expect_one_line_error(run_duet("run -m " + *tiny_ + " -n 2 -f /dev/null hi"), "not both");
  expect_one_line_error(run_duet("run -m " + *tiny_ + " -n 2 -f /nonexistent/prompt.txt"), "/nonexistent/prompt.txt");
  expect_one_line_error(run_duet("run -m " + *tiny_ + " -n 2 -f - < /dev/null"), "empty");
}

TEST_F(ServeCliTest, ServeAndChatErrorsBeforeServing) {
  expect_one_line_error(run_duet("serve --port 0 -m /nonexistent/model.gguf"), "does not exist");
  expect_one_line_error(run_duet("serve --port 0 -m " + *tiny_ + " --ctx 100000"), "--ctx 100000");
  expect_one_line_error(run_duet("serve --port 0 --host 203.0.113.7 -m " + *tiny_), "cannot bind");
  expect_one_line_error(run_duet("chat -m /nonexistent/model.gguf < /dev/null"), "does not exist");
  // --tp: a split the model's heads refuse, none below 1.
  expect_one_line_error(run_duet("serve --port 0 -m " + *tiny_ + " --tp 3"), "--tp 3 does not divide the 4 query heads");
  expect_one_line_error(run_duet("serve --port 0 -m " + *tiny_ + " --tp 0"), "--tp must be at least 1");

  // A port already taken by another socket.
  const int taken = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(taken, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &len);
  expect_one_line_error(run_duet("serve -m " + *tiny_ + " --port " + std::to_string(ntohs(addr.sin_port))), "cannot bind");
  close(taken);
}

}  // namespace
}  // namespace duet
