// quote(): a name read from a checkpoint, made safe to put in a one-line error.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace duet {

// The name in single quotes, with control bytes as \xNN and anything past 120
// bytes cut to "...": a corrupt file cannot put newlines or megabytes into a
// message. Bytes >= 0x80 pass through so UTF-8 names stay readable.
inline std::string quote(std::string_view name) {
  constexpr size_t kMaxShown = 120;
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < kMaxShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F) {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02X", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (name.size() > kMaxShown) out += "...";
  return out + "'";
}

}  // namespace duet
