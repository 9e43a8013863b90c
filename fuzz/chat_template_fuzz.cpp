// libFuzzer target for chat rendering (render_chat): the Jinja template a model
// ships and the messages a user sends.
//
// Input: a flags byte (bit 0: add_generation_prompt), then NUL-separated
// fields: the template, then role, content, role, content, ... For the
// ChatML family, whose layout does not depend on the template beyond its
// default system turn, the output must be exactly that system turn (if any)
// followed by every turn verbatim and the assistant prompt when asked for.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_checks.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  if (size == 0) return 0;
  const bool add_generation_prompt = data[0] & 1;
  std::vector<std::string> fields;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  while (true) {
    const size_t nul = rest.find('\0');
    fields.emplace_back(rest.substr(0, nul));
    if (nul == std::string_view::npos) break;
    rest.remove_prefix(nul + 1);
  }
  const std::string& tmpl = fields[0];
  std::vector<ChatMessage> messages;
  for (size_t i = 1; i + 1 < fields.size(); i += 2) messages.push_back({fields[i], fields[i + 1]});

  Result<std::string> text = render_chat(tmpl, messages, add_generation_prompt);
  if (!text.ok()) {
    fuzz::check_error_line(text.message(), "");
    return 0;
  }
  // Only ChatML output starts with <|im_start|> (Llama 2: "[INST] ", Llama 3: <|start_header_id|>).
  if (text->rfind("<|im_start|>", 0) != 0) return 0;
  std::string turns;
  for (const ChatMessage& m : messages) turns += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) turns += "<|im_start|>assistant\n";
  DUET_CHECK(text->size() >= turns.size() && text->compare(text->size() - turns.size(), turns.size(), turns) == 0);
  // Before the turns, at most the template's default system turn, and only when the
  // conversation brings no system turn of its own.
  const std::string_view prefix = std::string_view(*text).substr(0, text->size() - turns.size());
  if (!prefix.empty()) {
    DUET_CHECK(!messages.empty() && messages[0].role != "system");
    DUET_CHECK(prefix.rfind("<|im_start|>system\n", 0) == 0 && prefix.ends_with("<|im_end|>\n"));
  }
  return 0;
}
