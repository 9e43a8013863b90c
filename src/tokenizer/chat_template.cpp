// Hand-rendered chat formats (see chat_template.h). The layouts follow
// llama.cpp's llama-chat.cpp for the same families.
#include "tokenizer/chat_template.h"

#include <optional>
#include <sstream>

namespace duet {

namespace {

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string trim(const std::string& s) {
  const char* kSpace = " \t\n\r\f\v";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

// ChatML templates such as SmolLM2's open with
//   {% if loop.first and messages[0]['role'] != 'system' %}
//   {{ '<|im_start|>system\nYou are a helpful AI assistant ...<|im_end|>\n' }}
// i.e. a system turn used when the conversation brings none. Returns its text.
std::optional<std::string> chatml_default_system(const std::string& tmpl) {
  if (!contains(tmpl, "messages[0]['role'] != 'system'") && !contains(tmpl, "messages[0][\"role\"] != \"system\"")) {
    return std::nullopt;
  }
  const std::string_view kOpen = "<|im_start|>system";
  const size_t open = tmpl.find(kOpen);
  if (open == std::string::npos) return std::nullopt;
  size_t begin = open + kOpen.size();
  // The newline is either literal or the two characters '\' 'n' of a Jinja string.
  if (tmpl.compare(begin, 1, "\n") == 0) {
    begin += 1;
  } else if (tmpl.compare(begin, 2, "\\n") == 0) {
    begin += 2;
  } else {
    return std::nullopt;
  }
  const size_t end = tmpl.find("<|im_end|>", begin);
  if (end == std::string::npos) return std::nullopt;
  std::string text;
  for (size_t i = begin; i < end; ++i) {
    const bool escaped_newline = tmpl[i] == '\\' && i + 1 < end && tmpl[i + 1] == 'n';
    text.push_back(escaped_newline ? '\n' : tmpl[i]);
    i += escaped_newline ? 1 : 0;
  }
  return text;
}

std::string render_chatml(const std::string& tmpl, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::ostringstream out;
  if (!messages.empty() && messages[0].role != "system") {
    if (auto system = chatml_default_system(tmpl)) out << "<|im_start|>system\n" << *system << "<|im_end|>\n";
  }
  for (const auto& m : messages) out << "<|im_start|>" << m.role << "\n" << m.content << "<|im_end|>\n";
  if (add_generation_prompt) out << "<|im_start|>assistant\n";
  return out.str();
}

// No <|begin_of_text|>: encode adds it as BOS.
std::string render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::ostringstream out;
  for (const auto& m : messages) {
    out << "<|start_header_id|>" << m.role << "<|end_header_id|>\n\n" << trim(m.content) << "<|eot_id|>";
  }
  if (add_generation_prompt) out << "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out.str();
}

// Llama 2: "[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST]assistant</s>[INST] ...".
// The first <s> comes from encode's BOS; the template decides whether later
// turns repeat it, whether a system turn gets <<SYS>> and whether content is
// stripped. The assistant turn needs no prompt: "[/INST]" already asks for it.
std::string render_llama2(const std::string& tmpl, const std::vector<ChatMessage>& messages) {
  // llama.cpp's variant precedence: strip, else BOS inside history, else <<SYS>>.
  const bool strip = contains(tmpl, "content.strip()");
  const bool bos_inside_history = !strip && contains(tmpl, "bos_token + '[INST]");
  const bool system_supported = strip || bos_inside_history || contains(tmpl, "<<SYS>>");
  std::ostringstream out;
  bool inside_turn = true;
  out << "[INST] ";
  for (const auto& m : messages) {
    const std::string content = strip ? trim(m.content) : m.content;
    if (!inside_turn) {
      inside_turn = true;
      out << (bos_inside_history ? "<s>[INST] " : "[INST] ");
    }
    if (m.role == "system") {
      if (system_supported) {
        out << "<<SYS>>\n" << content << "\n<</SYS>>\n\n";
      } else {
        out << content << "\n";
      }
    } else if (m.role == "user") {
      out << content << " [/INST]";
    } else {
      out << content << "</s>";
      inside_turn = false;
    }
  }
  return out.str();
}

}  // namespace

Result<std::string> render_chat(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
  constexpr const char* kSupported = "supported families: ChatML (<|im_start|>), Llama 3 (<|start_header_id|>), Llama 2 ([INST])";
  if (tmpl.empty()) return make_error("model has no chat template; ", kSupported);
  if (contains(tmpl, "<|im_start|>") && !contains(tmpl, "<|im_sep|>") && !contains(tmpl, "<end_of_utterance>")) {
    return render_chatml(tmpl, messages, add_generation_prompt);
  }
  if (contains(tmpl, "[INST]") && !contains(tmpl, "[SYSTEM_PROMPT]") && !contains(tmpl, "[AVAILABLE_TOOLS]") &&
      !contains(tmpl, "' [INST] ' + system_message")) {
    return render_llama2(tmpl, messages);
  }
  if (contains(tmpl, "<|start_header_id|>") && contains(tmpl, "<|end_header_id|>")) {
    return render_llama3(messages, add_generation_prompt);
  }
  std::string head;
  for (char c : tmpl.substr(0, 80)) head += c == '\n' ? std::string("\\n") : std::string(1, c);
  return make_error("unsupported chat template (", kSupported, "); it starts with: ", head);
}

}  // namespace duet
