// Central finite differences for the training tests: compares an analytic
// gradient with (L(x + h e_j) - L(x - h e_j)) / 2h entry by entry.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace duet::test {

struct GradientTolerance {
  double step = 1e-2;  // h
  double abs = 2e-3;   // |analytic - numeric| <= abs + rel * |numeric|
  double rel = 1e-2;
};

// Checks up to `max_entries` entries of x, evenly spread (all when x is smaller). `loss` reads x.
inline void expect_gradient(const std::string& what, std::vector<float>& x, const std::vector<float>& analytic,
                            const std::function<double()>& loss, const GradientTolerance& tol = {},
                            size_t max_entries = 1u << 30) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  const size_t stride = std::max<size_t>(1, x.size() / std::min(max_entries, x.size()));
  int bad = 0, checked = 0;
  for (size_t j = stride / 2; j < x.size(); j += stride, ++checked) {
    const float saved = x[j];
    x[j] = saved + static_cast<float>(tol.step);
    const double up = loss();
    x[j] = saved - static_cast<float>(tol.step);
    const double down = loss();
    x[j] = saved;
    const double numeric = (up - down) / (2 * tol.step);
    if (std::abs(analytic[j] - numeric) > tol.abs + tol.rel * std::abs(numeric) && ++bad <= 5) {
      ADD_FAILURE() << what << "[" << j << "]: analytic " << analytic[j] << " vs numeric " << numeric;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << checked << " checked entries outside tolerance";
}

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace duet::test
