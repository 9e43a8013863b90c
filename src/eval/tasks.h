// Benchmark tasks: which tasks duet knows, and their JSONL files turned into
// log-likelihood requests, following the conventions of
// ../shared/data/README.md (lm-evaluation-harness, zero-shot):
//  - multiple choice {"id","context","choices","label"}: one request per choice,
//    (context, choice); choices carry their leading space.
//  - winogrande {"id","contexts","continuation","label"}: partial scoring, one
//    request per option, (contexts[i], continuation).
//  - lambada {"id","context","target"}: one request, (context, target), scored
//    for greedy exactness and perplexity.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace duet {

enum class TaskKind { kMultipleChoice, kPartialContext, kLastWord };

struct TaskSpec {
  const char* name;       // "hellaswag"
  TaskKind kind;
  bool has_acc_norm;      // the harness reports acc_norm for this task
  const char* data_file;  // default path under the data folder: "hellaswag/dev.jsonl"
};

// One log-likelihood request: score the continuation's tokens given the context.
struct Request {
  std::string context;
  std::string continuation;
};

struct TaskItem {
  std::string id;
  std::vector<Request> requests;  // one per choice (a single one for kLastWord)
  int label = 0;                  // index of the gold request; 0 for kLastWord
};

struct TaskData {
  const TaskSpec* spec = nullptr;
  std::vector<TaskItem> items;
};

// Every task duet can score, in a stable order.
const std::vector<TaskSpec>& task_specs();
Result<const TaskSpec*> find_task_spec(const std::string& name);
// The tasks `duet eval --task all` runs: the six of the LP accuracy table.
std::vector<std::string> default_task_names();

// Parses one JSONL line of `spec`'s format. `where` names the line in errors ("file:12").
Result<TaskItem> parse_task_line(const TaskSpec& spec, const std::string& line, const std::string& where);
// Reads the first `limit` items of a JSONL file (limit <= 0: all); blank lines are skipped.
Result<TaskData> load_task(const TaskSpec& spec, const std::string& path, int limit);

}  // namespace duet
