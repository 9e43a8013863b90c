// Chat prompt formats, detected from a model's Jinja chat template.
//
// We do not run Jinja: each supported family is recognised by its marker
// tokens and rendered by hand, the way llama.cpp's llama_chat_apply_template
// does, plus ChatML's default system prompt when the template inserts one
// (SmolLM2, Qwen2).
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace duet {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

// Error when the template is empty or of an unsupported family.
Result<std::string> render_chat(const std::string& jinja_template, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt);

}  // namespace duet
