#include "runtime/generate.h"

#include <chrono>

namespace duet {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}
}  // namespace

Result<GenerateResult> generate(Decoder& decoder, const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) return make_error("the prompt is empty (no tokens to condition on)");
  const int needed = static_cast<int>(prompt.size()) + options.max_new_tokens;
  if (needed > decoder.capacity()) {
    return make_error("prompt of ", prompt.size(), " tokens plus ", options.max_new_tokens,
                      " new tokens does not fit the context of ", decoder.capacity(), " (raise --ctx or lower -n)");
  }
  decoder.reset();
  GenerateResult result;
  result.prompt_tokens = static_cast<int>(prompt.size());
  Sampler sampler(options.sampling);
  std::vector<float> logits;

  auto start = Clock::now();
  DUET_TRY(decoder.forward(prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, logits));
  result.prefill_seconds = seconds_since(start);

  start = Clock::now();
  for (int i = 0; i < options.max_new_tokens; ++i) {
    const int32_t token = sampler.sample(logits.data(), decoder.vocab_size());
    result.tokens.push_back(token);
    if (on_token) on_token(token);
    if (options.is_end_of_generation && options.is_end_of_generation(token)) break;
    if (i + 1 == options.max_new_tokens) break;
    DUET_TRY(decoder.forward(&token, 1, LogitsMode::Last, logits));
  }
  result.decode_seconds = seconds_since(start);
  return result;
}

}  // namespace duet
