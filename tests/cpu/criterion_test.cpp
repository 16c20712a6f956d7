// The DESIGN.md correctness criterion (reference::compare, compare_lse) on hand-made vectors.
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "cpu/reference/reference.h"

namespace flashattn::reference {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(Criterion, BoundIsMultiplierTimesLowPrecisionErrorPlusSlack) {
  const std::vector<double> ref = {1.0, -2.0, 0.5};
  const std::vector<double> lowp = {1.01, -2.0, 0.5};  // lowp error 0.01
  // 2 * 0.01 + 1e-5 = 0.02001
  const Comparison inside = compare(std::vector<double>{1.0, -2.02, 0.5}, ref, lowp, 2.0);
  EXPECT_TRUE(inside.passed) << inside.describe();
  EXPECT_NEAR(inside.lowp_error, 0.01, 1e-15);
  EXPECT_NEAR(inside.tolerance, 0.02001, 1e-15);
  EXPECT_EQ(inside.worst_index, 1);

  const Comparison outside = compare(std::vector<double>{1.0, -2.0, 0.5 + 0.0201}, ref, lowp, 2.0);
  EXPECT_FALSE(outside.passed) << outside.describe();
  EXPECT_EQ(outside.worst_index, 2);
  EXPECT_NE(outside.describe().find("FAILED"), std::string::npos);

  // The same error passes with the gradients' multiplier 3.
  EXPECT_TRUE(compare(std::vector<double>{1.0, -2.0, 0.5 + 0.0201}, ref, lowp, 3.0).passed);
}

TEST(Criterion, SlackAloneCoversExactLowPrecision) {
  const std::vector<double> ref = {0.25, 0.75};
  EXPECT_TRUE(compare(std::vector<double>{0.25 + 9e-6, 0.75}, ref, ref, 2.0).passed);
  EXPECT_FALSE(compare(std::vector<double>{0.25 + 2e-5, 0.75}, ref, ref, 2.0).passed);
}

TEST(Criterion, NaNNeverPasses) {
  const std::vector<double> ref = {1.0, 2.0, 3.0};
  const std::vector<double> sloppy = {100.0, 200.0, 300.0};  // a huge tolerance
  const Comparison result = compare(std::vector<double>{1.0, kNaN, kNaN}, ref, sloppy, 2.0);
  EXPECT_FALSE(result.passed);
  EXPECT_EQ(result.nan_count, 2);
  EXPECT_EQ(result.worst_index, 1);  // the first NaN
  // NaN in either reference makes the bound meaningless: fail rather than pass everything.
  EXPECT_FALSE(compare(ref, ref, std::vector<double>{1.0, kNaN, 3.0}, 2.0).passed);
  EXPECT_FALSE(compare(ref, std::vector<double>{1.0, kNaN, 3.0}, ref, 2.0).passed);
  EXPECT_FALSE(compare_lse(ref, std::vector<double>{1.0, kNaN, 3.0}).passed);
  // Infinity in the output is an error like any other.
  EXPECT_FALSE(compare(std::vector<double>{1.0, kInf, 3.0}, ref, sloppy, 2.0).passed);
}

TEST(Criterion, SizeMismatchFails) {
  const std::vector<double> ref = {1.0, 2.0};
  const Comparison result = compare(std::vector<double>{1.0}, ref, ref, 2.0);
  EXPECT_FALSE(result.passed);
  EXPECT_TRUE(result.size_mismatch);
  EXPECT_FALSE(compare_lse(std::vector<double>{1.0}, ref).passed);
}

TEST(CriterionLse, RelativeBoundWithFloorOfOne) {
  const std::vector<double> ref = {1000.0, 0.001, -50.0};
  // 1e-4 relative to |ref| (>= 1), absolute 1e-4 where |ref| < 1.
  EXPECT_TRUE(compare_lse(std::vector<double>{1000.09, 0.001 + 9e-5, -50.004}, ref).passed);
  EXPECT_FALSE(compare_lse(std::vector<double>{1000.11, 0.001, -50.0}, ref).passed);
  EXPECT_FALSE(compare_lse(std::vector<double>{1000.0, 0.001 + 1.1e-4, -50.0}, ref).passed);
  EXPECT_FALSE(compare_lse(std::vector<double>{1000.0, 0.001, -50.006}, ref).passed);
}

TEST(CriterionLse, InfinityMustMatchInfinity) {
  const std::vector<double> ref = {kInf, 2.0};
  EXPECT_TRUE(compare_lse(std::vector<double>{kInf, 2.0}, ref).passed);
  EXPECT_FALSE(compare_lse(std::vector<double>{1e30, 2.0}, ref).passed);   // finite for +inf
  EXPECT_FALSE(compare_lse(std::vector<double>{-kInf, 2.0}, ref).passed);  // wrong sign
  EXPECT_FALSE(compare_lse(std::vector<double>{kInf, kInf}, ref).passed);  // +inf for finite
  const Comparison nan = compare_lse(std::vector<double>{kNaN, 2.0}, ref);
  EXPECT_FALSE(nan.passed);
  EXPECT_EQ(nan.nan_count, 1);
}

}  // namespace
}  // namespace flashattn::reference
