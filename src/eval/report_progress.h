// ProgressBar: one self-overwriting stderr line for long evaluations
// ("hellaswag [########......]  52%  41.2k/79.0k tok  1.6k tok/s  eta 23s").
// stderr only, so stdout stays machine-readable (the JSON result lines).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace duet {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  // Redraws at most a few times a second, and always when done == total.
  void update(int64_t done, int64_t total, const std::string& unit = "tok");

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// 41234 -> "41.2k".
std::string human_count(double value);

}  // namespace duet
