// JSON from outside input (checkpoint headers, configs, tokenizers, requests).
//
// nlohmann's parser and destructor are iterative, but copying a value, dump()
// and our own walks of it recurse once per nesting level: a hostile file nested
// 10^5 levels deep overflows the stack there (a config.json of 200 KB did).
// Real files nest fewer than 10 levels, so deeper input is rejected before parsing.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/result.h"

namespace duet {

inline constexpr int kMaxJsonDepth = 64;

// The parsed value, or "NAME: invalid JSON: <why>" / "NAME: JSON nested deeper
// than 64 levels" (one line).
Result<nlohmann::json> parse_json_input(const std::string& name, std::string_view text);

}  // namespace duet
