// The GPU's softcap tanh (common/fast_tanh.h) against std::tanh in double. On the host exp2f and
// a division stand in for the kernels' ex2.approx and rcp.approx (2 ulp and 1 ulp: their bound
// is about twice the one checked here).
#include "common/fast_tanh.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace flashattn {
namespace {

float exp_of_2y(float y) {
  return std::exp2(y * (2.0f * 1.4426950408889634f));
}
float reciprocal(float x) {
  return 1.0f / x;
}

// Relative: what the kernels use for softcaps above kAbsoluteSoftcapMax (64).
float tanh_on_host(float y) {
  return tanh_from_exp_relative(y, exp_of_2y(y), reciprocal);
}
float tanh_absolute_on_host(float y) {
  return tanh_from_exp(exp_of_2y(y), reciprocal);
}

std::vector<float> arguments() {
  std::vector<float> ys;
  for (float magnitude = 1e-30f; magnitude < 40.0f; magnitude *= 1.01f) {
    ys.push_back(magnitude);
    ys.push_back(-magnitude);
  }
  for (float y = 0.120f; y < 0.130f; y += 1e-5f) ys.push_back(y);  // across the switch at 1/8
  return ys;
}

TEST(FastTanh, RelativeErrorBelowOnePpmEverywhere) {
  double worst = 0.0;
  float worst_at = 0.0f;
  for (float y : arguments()) {
    const double exact = std::tanh(static_cast<double>(y));
    const double error = std::abs(static_cast<double>(tanh_on_host(y)) - exact) / std::abs(exact);
    if (error > worst) {
      worst = error;
      worst_at = y;
    }
  }
  EXPECT_LE(worst, 1e-6) << "at y = " << worst_at;
}

TEST(FastTanh, ZeroSaturationAndNan) {
  EXPECT_EQ(tanh_on_host(0.0f), 0.0f);
  EXPECT_EQ(tanh_on_host(100.0f), 1.0f);
  EXPECT_EQ(tanh_on_host(-100.0f), -1.0f);
  EXPECT_EQ(tanh_on_host(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(tanh_on_host(-std::numeric_limits<float>::infinity()), -1.0f);
  EXPECT_TRUE(std::isnan(tanh_on_host(std::numeric_limits<float>::quiet_NaN())));
}

// The kernels' cheaper tanh for softcaps up to 64: an absolute error of a few 2^-24 (the
// kernels' ex2.approx / rcp.approx: about twice that), so at most 64 * 2^-21 = 3e-5 on a score.
TEST(FastTanh, AbsoluteErrorBelowTwoToMinus22) {
  double worst = 0.0;
  float worst_at = 0.0f;
  for (float y : arguments()) {
    const double error =
        std::abs(static_cast<double>(tanh_absolute_on_host(y)) - std::tanh(static_cast<double>(y)));
    if (error > worst) {
      worst = error;
      worst_at = y;
    }
  }
  EXPECT_LE(worst, std::ldexp(1.0, -22)) << "at y = " << worst_at;
  EXPECT_EQ(tanh_absolute_on_host(100.0f), 1.0f);
  EXPECT_EQ(tanh_absolute_on_host(-100.0f), -1.0f);
}

// c tanh(s / c) ~ s where |s| << c: a large softcap must give the capped scores to float
// precision (1 - 2 / (1 + e) alone moved them by up to c 2^-21: 0.5 at c = 10^6).
TEST(FastTanh, LargeSoftcapKeepsScoresExact) {
  for (float softcap : {30.0f, 1e3f, 1e6f, 1e12f}) {
    for (float score = -30.0f; score <= 30.0f; score += 0.37f) {
      const double exact =
          softcap * std::tanh(static_cast<double>(score) / static_cast<double>(softcap));
      const float capped = softcap * tanh_on_host(score / softcap);
      EXPECT_NEAR(capped, exact, 1e-6 * std::abs(exact) + 1e-12)
          << "softcap " << softcap << " score " << score;
    }
  }
}

}  // namespace
}  // namespace flashattn
