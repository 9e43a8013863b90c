// Properties every fuzz target checks of a parser's answer to bad input.
#pragma once

#include <string>
#include <string_view>

#include "core/check.h"

namespace duet::fuzz {

// A parser error is one non-empty line that starts with `prefix` (the input's
// name), so the CLI can print it as "duet: error: <message>".
inline void check_error_line(const std::string& message, std::string_view prefix) {
  DUET_CHECK(!message.empty());
  DUET_CHECK(message.find('\n') == std::string::npos);
  DUET_CHECK(message.compare(0, prefix.size(), prefix) == 0);
}

}  // namespace duet::fuzz
