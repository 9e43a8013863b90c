// build_train_data_cuda (train/cuda/heal_cuda.h): train/data.cpp's recipe with
// the documents sampled in batches on the GPU by sample_documents (sample.cu).
// A .cpp (C++20, for the tokenizer) in duet_core; only CUDA builds call it,
// so only they link the sample_documents it needs.
#include <algorithm>

#include "tokenizer/tokenizer.h"
#include "train/cuda/heal_cuda.h"

namespace duet::train {
namespace {

// Fills `out` up to `count` sequences from documents sampled in rounds (each round sized from the tokens
// still missing), prompts taken in turn from `first_prompt`.
Status generate_sequences(const ModelWeights& original, const Tokenizer& tokenizer, const DataOptions& o, int batch,
                          size_t count, uint64_t seed, size_t first_prompt, int64_t& generated, int64_t total,
                          std::vector<std::vector<int32_t>>& out) {
  const std::vector<std::string>& prompts = builtin_prompts();
  std::vector<int32_t> stream;
  size_t doc = 0;
  while (out.size() < count) {
    const int64_t missing = static_cast<int64_t>(count - out.size()) * o.seq_len - static_cast<int64_t>(stream.size());
    // Documents average ~3/4 of seq_len (some end early): ask for a little more than the missing tokens.
    const int64_t wanted = std::max<int64_t>(1, (missing * 4 / 3 + o.seq_len - 1) / o.seq_len);
    const int64_t round = (wanted + batch - 1) / batch * batch;
    std::vector<std::vector<int32_t>> round_prompts;
    for (int64_t i = 0; i < round; ++i) {
      std::vector<int32_t> p =
          tokenizer.encode(prompts[(first_prompt + doc + i) % prompts.size()], tokenizer.add_bos_default(), false);
      p.resize(std::min<size_t>(p.size(), std::max(1, o.seq_len / 2)));
      round_prompts.push_back(std::move(p));
    }
    DUET_ASSIGN_OR_RETURN(
        std::vector<std::vector<int32_t>> docs,
        sample_documents(original, round_prompts, o.seq_len, o.temperature, seed + doc, batch,
                         [&](int32_t id) { return tokenizer.is_end_of_generation(id); }, [](size_t) {}));
    doc += round;
    for (const std::vector<int32_t>& d : docs) {
      stream.insert(stream.end(), d.begin(), d.end());
      generated += static_cast<int64_t>(d.size());
    }
    if (o.on_progress) o.on_progress(std::min(generated, total), total);
    stream.erase(stream.begin(), stream.begin() + append_sequences(stream, o.seq_len, count, out));
  }
  return ok_status();
}

}  // namespace

Result<TrainData> build_train_data_cuda(const ModelWeights& original, const Tokenizer& tokenizer,
                                        const DataOptions& o, int batch) {
  TrainData data;
  DUET_TRY(read_data_files(tokenizer, o, data));
  const int64_t to_generate = static_cast<int64_t>(o.sequences - data.train.size() + o.heldout_sequences) * o.seq_len;
  // Held-out text: another seed, prompts from half-way through the list (as train/data.cpp).
  DUET_TRY(generate_sequences(original, tokenizer, o, batch, o.sequences, o.seed * 1000003 + 1, 0,
                              data.generated_tokens, to_generate, data.train));
  DUET_TRY(generate_sequences(original, tokenizer, o, batch, o.heldout_sequences, o.seed * 1000003 + 2,
                              builtin_prompts().size() / 2, data.generated_tokens, to_generate, data.heldout));
  if (o.on_progress) o.on_progress(to_generate, to_generate);
  return data;
}

}  // namespace duet::train
