// Training text for healing. By default the original model writes its own:
// sampled continuations (temperature 1, no top-k/top-p cut) of a varied
// built-in prompt set, so healing needs no corpus and never sees an evaluation
// set (duet eval's task files and duet ppl's WikiText-2 are never read here).
// --data files add user text; it is used first, and generation fills the rest.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/weights.h"

namespace duet {
class Tokenizer;  // tokenizer/tokenizer.h (C++20) stays out of this header, which the CUDA (C++17) healer includes
}  // namespace duet

namespace duet::train {

struct DataOptions {
  int sequences = 0;          // training sequences wanted
  int heldout_sequences = 0;  // generated sequences kept apart to measure KL
  int seq_len = 0;            // tokens per sequence
  std::vector<std::string> files;
  uint64_t seed = 0;
  float temperature = 1.0f;
  std::function<void(int64_t done, int64_t total)> on_progress;  // generated tokens
};

struct TrainData {
  std::vector<std::vector<int32_t>> train;    // [sequences][seq_len]
  std::vector<std::vector<int32_t>> heldout;  // [heldout_sequences][seq_len]
  int64_t file_tokens = 0;                    // training tokens taken from --data files
  int64_t generated_tokens = 0;               // tokens the model wrote (train + held out)
};

// The built-in prompts the original model continues.
const std::vector<std::string>& builtin_prompts();

// Cuts whole sequences of seq_len tokens off the front of a token stream, until `out` holds `limit`;
// returns the tokens used (a tail shorter than seq_len stays).
size_t append_sequences(const std::vector<int32_t>& stream, int seq_len, size_t limit,
                        std::vector<std::vector<int32_t>>& out);

// The --data files, tokenized and cut into data.train (up to options.sequences); counts data.file_tokens.
// Errors name a missing, unreadable or too short (under one sequence) file.
Status read_data_files(const Tokenizer& tokenizer, const DataOptions& options, TrainData& data);

// Reads and tokenizes the files (errors name a missing or unreadable file), then generates the rest with
// `original` on the CPU. Deterministic for a given seed.
Result<TrainData> build_train_data(const ModelWeights& original, const Tokenizer& tokenizer,
                                   const DataOptions& options);

}  // namespace duet::train
