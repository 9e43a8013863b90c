// libFuzzer target for HF config.json (config_from_hf_json).
//
// An accepted config passes validate_config (so nothing sized by it is absurd)
// and carries either no RoPE factors or exactly head_dim / 2 positive ones.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_checks.h"
#include "model/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  const std::string text(reinterpret_cast<const char*>(data), size);
  Result<ModelConfig> config = config_from_hf_json(text);
  if (!config.ok()) {
    fuzz::check_error_line(config.message(), "config.json: ");
    return 0;
  }
  DUET_CHECK(validate_config(*config).ok());
  DUET_CHECK(config->rope_freq_factors.empty() ||
             static_cast<int>(config->rope_freq_factors.size()) == config->head_dim / 2);
  for (float f : config->rope_freq_factors) DUET_CHECK(std::isfinite(f) && f > 0);
  return 0;
}
