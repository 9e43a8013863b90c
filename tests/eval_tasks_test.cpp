// Task JSONL parsing (../shared/data/README.md formats) and its errors: each
// bad input gives one line that names the file, line and what was expected.
#include <gtest/gtest.h>

#include <fstream>

#include "eval/tasks.h"
#include "test_support.h"

namespace duet {
namespace {

const TaskSpec& spec(const std::string& name) { return *find_task_spec(name).value(); }

std::string write_file(const std::string& text) {
  const std::string path = test::temp_dir("eval_tasks") + "/task.jsonl";
  std::ofstream(path) << text;
  return path;
}

TEST(EvalTasks, MultipleChoiceGivesOneRequestPerChoice) {
  auto item = parse_task_line(
      spec("piqa"), R"({"id": "p1", "context": "Question: q\nAnswer:", "choices": [" a ", " b"], "label": 1})", "t:1");
  ASSERT_TRUE(item.ok()) << item.message();
  EXPECT_EQ(item->id, "p1");
  EXPECT_EQ(item->label, 1);
  ASSERT_EQ(item->requests.size(), 2u);
  EXPECT_EQ(item->requests[0].context, "Question: q\nAnswer:");
  EXPECT_EQ(item->requests[0].continuation, " a ");  // trailing space kept verbatim
  EXPECT_EQ(item->requests[1].continuation, " b");
}

TEST(EvalTasks, WinograndeScoresTheSharedContinuationAfterEachContext) {
  auto item = parse_task_line(spec("winogrande"),
                              R"({"id": "w", "contexts": ["A so A", "A so B"], "continuation": " ran.", "label": 0})",
                              "t:1");
  ASSERT_TRUE(item.ok()) << item.message();
  ASSERT_EQ(item->requests.size(), 2u);
  EXPECT_EQ(item->requests[0].context, "A so A");
  EXPECT_EQ(item->requests[1].context, "A so B");
  EXPECT_EQ(item->requests[1].continuation, " ran.");
}

TEST(EvalTasks, LambadaIsOneRequest) {
  auto item = parse_task_line(spec("lambada_openai"), R"({"id": "l", "context": "he said", "target": " hi"})", "t:1");
  ASSERT_TRUE(item.ok()) << item.message();
  ASSERT_EQ(item->requests.size(), 1u);
  EXPECT_EQ(item->requests[0].continuation, " hi");
}

TEST(EvalTasks, LoadsWithLimitAndSkipsBlankLines) {
  const std::string path = write_file(
      "{\"id\": \"a\", \"context\": \"c\", \"target\": \" x\"}\n\n"
      "{\"id\": \"b\", \"context\": \"c\", \"target\": \" y\"}\n"
      "{\"id\": \"c\", \"context\": \"c\", \"target\": \" z\"}\n");
  auto two = load_task(spec("lambada_openai"), path, 2);
  ASSERT_TRUE(two.ok()) << two.message();
  ASSERT_EQ(two->items.size(), 2u);
  EXPECT_EQ(two->items[1].id, "b");
  auto all = load_task(spec("lambada_openai"), path, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->items.size(), 3u);
}

TEST(EvalTasks, MalformedLineNamesFileAndLine) {
  const std::string path = write_file("{\"id\": \"a\", \"context\": \"c\", \"target\": \" x\"}\n{\"id\": \"b\", \"cont\n");
  auto data = load_task(spec("lambada_openai"), path, 0);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.message().find(path + ":2"), std::string::npos) << data.message();
  EXPECT_EQ(data.message().find('\n'), std::string::npos) << data.message();
}

TEST(EvalTasks, RejectsMissingFieldsAndBadLabels) {
  auto no_choices = parse_task_line(spec("hellaswag"), R"({"id": "h", "context": "c", "label": 0})", "f:3");
  ASSERT_FALSE(no_choices.ok());
  EXPECT_NE(no_choices.message().find("choices"), std::string::npos) << no_choices.message();
  auto bad_label =
      parse_task_line(spec("arc_easy"), R"({"id": "a", "context": "c", "choices": [" x", " y"], "label": 2})", "f:4");
  ASSERT_FALSE(bad_label.ok());
  EXPECT_NE(bad_label.message().find("out of range"), std::string::npos) << bad_label.message();
  EXPECT_FALSE(parse_task_line(spec("piqa"), "[1, 2]", "f:5").ok());
}

TEST(EvalTasks, UnknownTaskListsKnownOnes) {
  auto missing = find_task_spec("hellaswag2");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("unknown task 'hellaswag2'"), std::string::npos) << missing.message();
  EXPECT_NE(missing.message().find("winogrande"), std::string::npos) << missing.message();
}

TEST(EvalTasks, MissingDataFileIsAnError) {
  auto data = load_task(spec("piqa"), "/nonexistent/piqa.jsonl", 0);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.message().find("/nonexistent/piqa.jsonl"), std::string::npos) << data.message();
}

TEST(EvalTasks, DefaultTasksAreKnown) {
  for (const std::string& name : default_task_names()) EXPECT_TRUE(find_task_spec(name).ok()) << name;
}

}  // namespace
}  // namespace duet
