// One task end to end: tokenize every request of a TaskData, score them in
// batches through the Decoder, aggregate the metrics, and keep per-item
// records for `duet eval --dump` (the independent check compares those).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/result.h"
#include "eval/scoring.h"
#include "eval/scoring_metrics.h"
#include "eval/tasks.h"
#include "runtime/decoder.h"
#include "tokenizer/tokenizer.h"

namespace duet {

struct ItemRecord {
  std::string id;
  int label = 0;
  std::vector<RequestScore> scores;  // one per request, in request order
  ItemOutcome outcome;
};

struct TaskEvaluation {
  TaskMetrics metrics;
  std::vector<ItemRecord> items;
  int64_t tokens = 0;  // tokens run through the decoder
};

Result<TaskEvaluation> evaluate_task(Decoder& decoder, const Tokenizer& tokenizer, const TaskData& data,
                                     const ScoringOptions& options);

// One JSONL line: {"task","id","label","loglik":[...],"n_tokens":[...],"greedy":[...],"pred","pred_norm"}.
std::string item_record_json(const std::string& task, const ItemRecord& record);

}  // namespace duet
