#include "eval/scoring_task.h"

#include <nlohmann/json.hpp>

namespace duet {

Result<TaskEvaluation> evaluate_task(Decoder& decoder, const Tokenizer& tokenizer, const TaskData& data,
                                     const ScoringOptions& options) {
  std::vector<TokenizedRequest> requests;
  for (const TaskItem& item : data.items) {
    for (const Request& request : item.requests) {
      auto tokenized = tokenize_request(tokenizer, request, decoder.capacity());
      if (!tokenized.ok()) return make_error(data.spec->name, " item ", item.id, ": ", tokenized.message());
      requests.push_back(std::move(tokenized).value());
    }
  }
  DUET_ASSIGN_OR_RETURN(std::vector<RequestScore> flat, score_requests(decoder, requests, options));

  TaskEvaluation out;
  std::vector<std::vector<RequestScore>> per_item;
  size_t next = 0;
  for (const TaskItem& item : data.items) {
    ItemRecord record{item.id, item.label, {}, {}};
    for (size_t r = 0; r < item.requests.size(); ++r) record.scores.push_back(flat[next++]);
    record.outcome = item_outcome(*data.spec, item, record.scores);
    per_item.push_back(record.scores);
    out.items.push_back(std::move(record));
  }
  for (const TokenizedRequest& r : requests) out.tokens += static_cast<int64_t>(r.tokens.size());
  out.metrics = task_metrics(data, per_item);
  return out;
}

std::string item_record_json(const std::string& task, const ItemRecord& record) {
  nlohmann::ordered_json j;
  j["task"] = task;
  j["id"] = record.id;
  j["label"] = record.label;
  std::vector<double> loglik;
  std::vector<int> n_tokens;
  std::vector<bool> greedy;
  for (const RequestScore& s : record.scores) {
    loglik.push_back(s.loglik);
    n_tokens.push_back(s.n_tokens);
    greedy.push_back(s.greedy);
  }
  j["loglik"] = loglik;
  j["n_tokens"] = n_tokens;
  j["greedy"] = greedy;
  j["pred"] = record.outcome.prediction;
  j["pred_norm"] = record.outcome.prediction_norm;
  return j.dump();
}

}  // namespace duet
