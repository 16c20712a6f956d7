// The softcap's tanh as the GPU kernels compute it (cuda_sm80::ScoreModifiers), written for host
// and device so that the CPU tests can hold it to std::tanh: the kernels pass ex2.approx and
// rcp.approx, the tests exp2f and a division.
#pragma once

#include <cmath>

#include "common/host_device.h"

namespace flashattn {

// tanh y = 1 - 2 / (1 + e) from e = e^(2y): an absolute error of a few 2^-24 (ex2.approx: 2 ulp,
// rcp.approx: 1 ulp), saturating to -1 / 1 where e underflows / overflows. A softcap c scales
// the error by c: c 2^-21 on the scores, 3e-5 at c = 64.
template <typename Reciprocal>
FLASHATTN_HD float tanh_from_exp(float e, Reciprocal reciprocal) {
  return fmaf(-2.0f, reciprocal(1.0f + e), 1.0f);
}

// The same with an error relative to tanh y everywhere (at most ~2^-19): below |y| = 1/8 the
// series y - y^3 / 3 + 2 y^5 / 15 (remainder 17 y^7 / 315 < 2^-25). For softcaps far above the
// scores, where c tanh(s / c) ~ s: tanh_from_exp alone moved every score by up to c 2^-21 (0.5
// at c = 10^6, a "large softcap" some callers use to mean none).
template <typename Reciprocal>
FLASHATTN_HD float tanh_from_exp_relative(float y, float e, Reciprocal reciprocal) {
  const float y2 = y * y;
  const float series = fmaf(y * y2, fmaf(y2, 2.0f / 15.0f, -1.0f / 3.0f), y);
  return fabsf(y) < 0.125f ? series : tanh_from_exp(e, reciprocal);
}

}  // namespace flashattn
