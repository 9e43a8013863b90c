#include "eval/report_progress.h"

#include <cstdio>

namespace duet {

std::string human_count(double value) {
  char buf[32];
  if (value >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", value / 1e6);
  else if (value >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", value / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", value);
  return buf;
}

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), start_(std::chrono::steady_clock::now()), last_draw_() {}

void ProgressBar::update(int64_t done, int64_t total, const std::string& unit) {
  const auto now = std::chrono::steady_clock::now();
  const bool finished = done >= total;
  if (!finished && now - last_draw_ < std::chrono::milliseconds(250)) return;
  last_draw_ = now;
  constexpr int kWidth = 24;
  const double fraction = total > 0 ? static_cast<double>(done) / total : 1.0;
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds = std::chrono::duration<double>(now - start_).count();
  // A rate from the first fraction of a second is noise (the bar may start late).
  const double rate = seconds > 0.5 ? done / seconds : 0;
  const double eta = rate > 0 ? (total - done) / rate : 0;
  std::fprintf(stderr, "\r%s [%s%s] %3d%%  %s/%s %s  %s %s/s  %s %.0fs   ", label_.c_str(),
               std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
               static_cast<int>(fraction * 100), human_count(done).c_str(), human_count(total).c_str(), unit.c_str(),
               human_count(rate).c_str(), unit.c_str(), finished ? "took" : "eta", finished ? seconds : eta);
  if (finished) std::fprintf(stderr, "\n");
}

}  // namespace duet
