// parse_json_input: a nesting-depth scan, then nlohmann's parser without exceptions.
#include "io/json_input.h"

#include <algorithm>

namespace duet {
namespace {

// Deepest [ / { nesting outside strings (stops counting once past `limit`).
int nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

Result<nlohmann::json> parse_json_input(const std::string& name, std::string_view text) {
  if (nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return make_error(name, ": JSON nested deeper than ", kMaxJsonDepth, " levels");
  }
  std::string why;
  // Not only parse_error: a number too large for a double ("1e999") throws
  // out_of_range, which once escaped the safetensors reader and aborted duet.
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    why = e.what();
  }
  // The parser quotes the bytes it last read, which may be anything (invalid UTF-8 included): the message
  // goes into terminals and JSON error bodies, so it keeps printable ASCII only.
  for (char& c : why) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return make_error(name, ": invalid JSON: ", why);
}

}  // namespace duet
