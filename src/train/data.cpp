#include "train/data.h"

#include <algorithm>

#include "io/text_file.h"
#include "runtime/generate.h"
#include "tokenizer/tokenizer.h"

namespace duet::train {
namespace {

// Fills `out` up to `count` sequences with the model's own continuations of the built-in prompts, starting
// at prompt `first_prompt`; each document (prompt + continuation, ended by an end-of-generation token or the
// length) joins one stream that is cut into sequences.
Status generate_sequences(Decoder& decoder, const Tokenizer& tokenizer, const DataOptions& o, size_t count,
                          uint64_t seed, size_t first_prompt, int64_t& generated, int64_t total,
                          std::vector<std::vector<int32_t>>& out) {
  const std::vector<std::string>& prompts = builtin_prompts();
  std::vector<int32_t> stream;
  for (size_t doc = 0; out.size() < count; ++doc) {
    std::vector<int32_t> prompt =
        tokenizer.encode(prompts[(first_prompt + doc) % prompts.size()], tokenizer.add_bos_default(), false);
    // At least half of each document is the model's own text (byte-level vocabularies make long prompts).
    prompt.resize(std::min<size_t>(prompt.size(), std::max(1, o.seq_len / 2)));
    GenerateOptions g;
    g.max_new_tokens = o.seq_len - static_cast<int>(prompt.size());
    g.sampling = SamplingParams{o.temperature, 0, 1.0f, seed + doc};
    g.is_end_of_generation = [&](int32_t id) { return tokenizer.is_end_of_generation(id); };
    DUET_ASSIGN_OR_RETURN(GenerateResult r, generate(decoder, prompt, g));
    stream.insert(stream.end(), prompt.begin(), prompt.end());
    stream.insert(stream.end(), r.tokens.begin(), r.tokens.end());
    generated += static_cast<int64_t>(prompt.size() + r.tokens.size());
    if (o.on_progress) o.on_progress(std::min(generated, total), total);
    stream.erase(stream.begin(), stream.begin() + append_sequences(stream, o.seq_len, count, out));
  }
  return ok_status();
}

}  // namespace

const std::vector<std::string>& builtin_prompts() {
  // Varied registers (story, science, how-to, dialogue, code, news, letters, lists, reasoning), written
  // for this file; none is taken from an evaluation set.
  static const std::vector<std::string> prompts = {
      "Once upon a time, in a village at the edge of a great forest,",
      "The water cycle describes how water moves between the oceans, the air and the land.",
      "To bake a simple loaf of bread at home, you will need",
      "Dear Maria,\nThank you for your letter. I wanted to tell you about",
      "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
      "Breaking news: the city council voted on Tuesday to",
      "Q: Why does the moon look different every night?\nA:",
      "Here are five tips for staying focused while studying:\n1.",
      "The history of the printing press begins in",
      "User: Can you explain what a neural network is?\nAssistant:",
      "In mathematics, a prime number is",
      "The old lighthouse keeper climbed the stairs one last time and",
      "Photosynthesis is the process by which plants",
      "A short guide to choosing a good pair of running shoes.",
      "Chapter 1\n\nThe train was late, as usual, and Thomas",
      "SELECT name, COUNT(*) FROM orders",
      "The main causes of the industrial revolution were",
      "If a train travels 60 kilometres in 45 minutes, its average speed is",
      "My favourite season is autumn because",
      "The following is a conversation between a teacher and a student about volcanoes.\n",
      "In the year 2150, the first colony on Mars",
      "Instructions for assembling the bookshelf:\nStep 1:",
      "Economists disagree about whether raising the minimum wage",
      "The recipe calls for two cups of flour, one egg and",
      "<html>\n<head>\n<title>My first web page</title>",
      "The sun rose slowly over the quiet harbour, and the fishermen",
      "Why is the sky blue? The short answer is",
      "A list of common mistakes people make when learning a new language:",
      "The committee's report concluded that",
      "She opened the box and found, to her surprise,",
      "The human heart has four chambers:",
      "Let x be a real number such that 2x + 3 = 11. Then",
      "Travel diary, day three. We left the hostel early and",
      "The rules of chess are simple to learn but",
      "public class Main {\n    public static void main(String[] args) {",
      "Climate scientists measure past temperatures using",
      "Good morning everyone, and welcome to today's meeting. First on the agenda is",
      "The difference between weather and climate is",
      "Once the robot had finished cleaning the kitchen, it",
      "An essay on the value of friendship.\n\nFriendship is",
  };
  return prompts;
}

size_t append_sequences(const std::vector<int32_t>& stream, int seq_len, size_t limit,
                        std::vector<std::vector<int32_t>>& out) {
  size_t pos = 0;
  for (; pos + seq_len <= stream.size() && out.size() < limit; pos += seq_len) {
    out.emplace_back(stream.begin() + pos, stream.begin() + pos + seq_len);
  }
  return pos;
}

Status read_data_files(const Tokenizer& tokenizer, const DataOptions& o, TrainData& data) {
  for (const std::string& file : o.files) {
    DUET_ASSIGN_OR_RETURN(std::string text, read_text_file(file));
    const std::vector<int32_t> tokens = tokenizer.encode(text, tokenizer.add_bos_default(), false);
    if (tokens.size() < static_cast<size_t>(o.seq_len)) {
      return make_error("--data ", file, ": ", tokens.size(), " tokens, fewer than one sequence of --seq-len ",
                        o.seq_len);
    }
    data.file_tokens += static_cast<int64_t>(append_sequences(tokens, o.seq_len, o.sequences, data.train));
  }
  return ok_status();
}

Result<TrainData> build_train_data(const ModelWeights& original, const Tokenizer& tokenizer, const DataOptions& o) {
  TrainData data;
  DUET_TRY(read_data_files(tokenizer, o, data));
  const int64_t to_generate = static_cast<int64_t>(o.sequences - data.train.size() + o.heldout_sequences) * o.seq_len;
  std::unique_ptr<Decoder> decoder = make_cpu_decoder(original, o.seq_len);
  // Held-out text uses another seed and starts half-way through the prompts, so it differs from training text.
  DUET_TRY(generate_sequences(*decoder, tokenizer, o, o.sequences, o.seed * 1000003 + 1, 0, data.generated_tokens,
                              to_generate, data.train));
  DUET_TRY(generate_sequences(*decoder, tokenizer, o, o.heldout_sequences, o.seed * 1000003 + 2,
                              builtin_prompts().size() / 2, data.generated_tokens, to_generate, data.heldout));
  return data;
}

}  // namespace duet::train
