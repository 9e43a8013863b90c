// Whole-file reads for small text inputs (configs, plans, prompts).
#pragma once

#include <string>

#include "core/result.h"

namespace duet {

Result<std::string> read_text_file(const std::string& path);

}  // namespace duet
