// libFuzzer target for model.safetensors.index.json (parse_safetensors_index).
//
// An accepted index names each shard once, as a plain file name beside the
// index, and maps every tensor to one of those shards.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_checks.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<SafetensorsIndex> index = parse_safetensors_index("fuzz.index.json", text);
  if (!index.ok()) {
    fuzz::check_error_line(index.message(), "fuzz.index.json: ");
    return 0;
  }
  std::vector<bool> used(index->shards.size(), false);
  for (const auto& [tensor, shard] : index->weight_map) {
    DUET_CHECK(shard < index->shards.size());
    used[shard] = true;
  }
  DUET_CHECK(std::all_of(used.begin(), used.end(), [](bool u) { return u; }));
  for (size_t i = 0; i < index->shards.size(); ++i) {
    const std::string& name = index->shards[i];
    DUET_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "..");
    DUET_CHECK(std::count(index->shards.begin(), index->shards.end(), name) == 1);
  }
  return 0;
}
