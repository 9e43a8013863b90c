#include "eval/tasks.h"

#include <fstream>
#include <nlohmann/json.hpp>

namespace duet {
namespace {

using nlohmann::json;

Result<std::string> string_field(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return make_error(where, ": expected a string field \"", key, "\"");
  return it->get<std::string>();
}

Result<std::vector<std::string>> string_list_field(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->size() < 2) {
    return make_error(where, ": expected \"", key, "\" to be a list of at least 2 strings");
  }
  std::vector<std::string> out;
  for (const json& v : *it) {
    if (!v.is_string()) return make_error(where, ": \"", key, "\" holds a non-string entry");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<int> label_field(const json& j, size_t n_options, const std::string& where) {
  auto it = j.find("label");
  if (it == j.end() || !it->is_number_integer()) return make_error(where, ": expected an integer field \"label\"");
  const int label = it->get<int>();
  if (label < 0 || label >= static_cast<int>(n_options)) {
    return make_error(where, ": label ", label, " is out of range for ", n_options, " options");
  }
  return label;
}

}  // namespace

const std::vector<TaskSpec>& task_specs() {
  static const std::vector<TaskSpec> specs = {
      {"hellaswag", TaskKind::kMultipleChoice, true, "hellaswag/dev.jsonl"},
      {"piqa", TaskKind::kMultipleChoice, true, "piqa/dev.jsonl"},
      {"arc_easy", TaskKind::kMultipleChoice, true, "arc_easy/dev.jsonl"},
      {"arc_challenge", TaskKind::kMultipleChoice, true, "arc_challenge/dev.jsonl"},
      {"winogrande", TaskKind::kPartialContext, false, "winogrande/dev.jsonl"},
      {"lambada_openai", TaskKind::kLastWord, false, "lambada_openai/dev.jsonl"},
      {"openbookqa", TaskKind::kMultipleChoice, true, "openbookqa/dev.jsonl"},
      {"boolq", TaskKind::kMultipleChoice, false, "boolq/dev.jsonl"},
      {"mmlu", TaskKind::kMultipleChoice, false, "mmlu/dev.jsonl"},
  };
  return specs;
}

std::vector<std::string> default_task_names() {
  return {"hellaswag", "piqa", "arc_easy", "arc_challenge", "winogrande", "lambada_openai"};
}

Result<const TaskSpec*> find_task_spec(const std::string& name) {
  std::string known;
  for (const TaskSpec& spec : task_specs()) {
    if (name == spec.name) return &spec;
    known += known.empty() ? spec.name : str_cat(", ", spec.name);
  }
  return make_error("unknown task '", name, "'; known tasks: ", known);
}

Result<TaskItem> parse_task_line(const TaskSpec& spec, const std::string& line, const std::string& where) {
  const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return make_error(where, ": not a JSON object");
  TaskItem item;
  DUET_ASSIGN_OR_RETURN(item.id, string_field(j, "id", where));
  switch (spec.kind) {
    case TaskKind::kMultipleChoice: {
      DUET_ASSIGN_OR_RETURN(std::string context, string_field(j, "context", where));
      DUET_ASSIGN_OR_RETURN(std::vector<std::string> choices, string_list_field(j, "choices", where));
      DUET_ASSIGN_OR_RETURN(item.label, label_field(j, choices.size(), where));
      for (std::string& choice : choices) item.requests.push_back({context, std::move(choice)});
      break;
    }
    case TaskKind::kPartialContext: {
      DUET_ASSIGN_OR_RETURN(std::vector<std::string> contexts, string_list_field(j, "contexts", where));
      DUET_ASSIGN_OR_RETURN(std::string continuation, string_field(j, "continuation", where));
      DUET_ASSIGN_OR_RETURN(item.label, label_field(j, contexts.size(), where));
      for (std::string& context : contexts) item.requests.push_back({std::move(context), continuation});
      break;
    }
    case TaskKind::kLastWord: {
      DUET_ASSIGN_OR_RETURN(std::string context, string_field(j, "context", where));
      DUET_ASSIGN_OR_RETURN(std::string target, string_field(j, "target", where));
      item.requests.push_back({std::move(context), std::move(target)});
      break;
    }
  }
  for (const Request& r : item.requests) {
    if (r.continuation.empty()) return make_error(where, ": empty continuation (nothing to score)");
  }
  return item;
}

Result<TaskData> load_task(const TaskSpec& spec, const std::string& path, int limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot open data file '", path, "' for task ", spec.name);
  TaskData data;
  data.spec = &spec;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (limit > 0 && static_cast<int>(data.items.size()) >= limit) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    DUET_ASSIGN_OR_RETURN(TaskItem item, parse_task_line(spec, line, str_cat(path, ":", line_no)));
    data.items.push_back(std::move(item));
  }
  if (data.items.empty()) return make_error("data file '", path, "' holds no items for task ", spec.name);
  return data;
}

}  // namespace duet
