// Helpers of the training tests: central finite differences, which compare
// an analytic gradient with (L(x + h e_j) - L(x - h e_j)) / 2h entry by
// entry, and a single-threaded fixture.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace duet::test {

// Runs a test on one OpenMP thread. The tiny shapes here make each parallel
// region a few microseconds of work, and on oversubscribed cores (CTest runs
// tests side by side; OMP_WAIT_POLICY=passive) every region waits for a
// sleeping thread to be scheduled: a 1 s test took a minute. The references
// and tolerances do not depend on the thread count.
class SingleThreadedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = omp_get_max_threads();
    omp_set_num_threads(1);
  }
  void TearDown() override { omp_set_num_threads(saved_); }

 private:
  int saved_ = 1;
};

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
