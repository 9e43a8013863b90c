#include "eval/scoring.h"

#include <algorithm>
#include <numeric>

namespace duet {

Result<TokenizedRequest> tokenize_request(const Tokenizer& tokenizer, const Request& request, int max_tokens) {
  const bool add_bos = tokenizer.add_bos_default();
  std::vector<int32_t> context = tokenizer.encode(request.context, add_bos, /*parse_special=*/false);
  std::vector<int32_t> whole = tokenizer.encode(request.context + request.continuation, add_bos, false);
  if (whole.size() <= context.size()) {
    return make_error("continuation '", request.continuation, "' adds no tokens after its context");
  }
  TokenizedRequest out;
  if (context.empty()) {
    const int32_t prefix = tokenizer.bos_id() != kNoToken ? tokenizer.bos_id() : tokenizer.eos_id();
    if (prefix == kNoToken) return make_error("empty context and the vocab has neither BOS nor EOS to stand for it");
    out.tokens.push_back(prefix);
  }
  out.continuation_begin = static_cast<int>(out.tokens.size() + context.size());
  out.tokens.insert(out.tokens.end(), whole.begin(), whole.end());
  const int n = static_cast<int>(out.tokens.size());
  if (n > max_tokens) {
    const int drop = n - max_tokens;
    if (out.continuation_begin - drop < 1) {
      return make_error("continuation of ", n - out.continuation_begin, " tokens does not fit a window of ",
                        max_tokens, " tokens");
    }
    out.tokens.erase(out.tokens.begin(), out.tokens.begin() + drop);
    out.continuation_begin -= drop;
  }
  return out;
}

namespace {

bool same_context(const TokenizedRequest& a, const TokenizedRequest& b) {
  return a.continuation_begin == b.continuation_begin &&
         std::equal(a.tokens.begin(), a.tokens.begin() + a.continuation_begin, b.tokens.begin());
}

}  // namespace

RequestScore continuation_score(const TokenizedRequest& request, const SequenceScores& scores) {
  RequestScore s;
  s.greedy = true;
  // scores entry t-1 is about token t.
  for (size_t t = request.continuation_begin; t < request.tokens.size(); ++t) {
    s.loglik += scores.log_probs[t - 1];
    s.greedy = s.greedy && scores.argmax[t - 1] == request.tokens[t];
    ++s.n_tokens;
  }
  return s;
}

Result<std::vector<RequestScore>> score_requests(Decoder& decoder, const std::vector<TokenizedRequest>& requests,
                                                 const ScoringOptions& options) {
  if (options.batch_size < 1) return make_error("batch size must be at least 1, got ", options.batch_size);
  // Longest first, but adjacent requests with the same context (one item's choices) stay together,
  // ranked by the longest of them, so a backend that reuses a shared prefix finds it in the batch.
  std::vector<size_t> rank_length(requests.size());
  for (size_t begin = 0, end = 0; begin < requests.size(); begin = end) {
    size_t longest = 0;
    for (end = begin; end < requests.size() && same_context(requests[begin], requests[end]); ++end) {
      longest = std::max(longest, requests[end].tokens.size());
    }
    std::fill(rank_length.begin() + begin, rank_length.begin() + end, longest);
  }
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rank_length[a] > rank_length[b]; });
  int64_t total = 0, done = 0;
  for (const TokenizedRequest& r : requests) total += static_cast<int64_t>(r.tokens.size());

  std::vector<RequestScore> out(requests.size());
  std::vector<std::vector<int32_t>> batch;
  std::vector<int> first_scored;
  std::vector<SequenceScores> scores;
  for (size_t first = 0; first < order.size(); first += options.batch_size) {
    const size_t last = std::min(order.size(), first + options.batch_size);
    batch.clear();
    first_scored.clear();
    for (size_t k = first; k < last; ++k) {
      batch.push_back(requests[order[k]].tokens);
      first_scored.push_back(requests[order[k]].continuation_begin);
    }
    DUET_TRY(decoder.score_sequences_from(batch, first_scored, scores));
    for (size_t k = first; k < last; ++k) {
      out[order[k]] = continuation_score(requests[order[k]], scores[k - first]);
      done += static_cast<int64_t>(requests[order[k]].tokens.size());
    }
    if (options.on_progress) options.on_progress(done, total);
  }
  return out;
}

}  // namespace duet
