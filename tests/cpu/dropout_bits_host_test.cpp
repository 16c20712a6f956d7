// The GPU's dropout bits (src/cuda/sm80/dropout_bits.cuh: a quad's lanes each draw one tile and
// transpose the words with shuffles) run here on the host, one std::thread per lane of a warp
// with the shuffles emulated through a barrier, and must equal common/philox.h's dropout_keeps
// bit for bit. This checks the quad transpose without a GPU; the GPU suites compare the
// kernels' returned masks with the CPU backends' on the device.
#include <gtest/gtest.h>

#include <barrier>
#include <cstdint>
#include <thread>
#include <vector>

// The header's device qualifiers become plain inline functions on the host, and the one warp
// intrinsic it uses is emulated below (it includes no CUDA header).
#define __device__
#define __forceinline__ inline

namespace {

// A warp of 32 host threads: each shuffle publishes every lane's value, waits for all 32, reads
// the partner's, and waits again before the slots are reused.
struct EmulatedWarp {
  uint32_t slots[32];
  std::barrier<> step{32};
};
EmulatedWarp* emulated_warp = nullptr;
thread_local uint32_t emulated_lane = 0;

}  // namespace

uint32_t __shfl_xor_sync(unsigned /*mask: all 32 lanes always take part here*/, uint32_t value,
                         int lane_mask) {
  emulated_warp->slots[emulated_lane] = value;
  emulated_warp->step.arrive_and_wait();
  const uint32_t partner = emulated_warp->slots[emulated_lane ^ static_cast<uint32_t>(lane_mask)];
  emulated_warp->step.arrive_and_wait();
  return partner;
}

#include "common/philox.h"
#include "cuda/sm80/dropout_bits.cuh"

namespace flashattn {
namespace {

struct BitsCase {
  uint64_t seed, offset;
  float p;
  uint32_t batch_head;
  uint32_t first_row;  // lane group g (lane / 4) takes row first_row + g
  uint32_t base;       // the warp's first key, a multiple of 8; lane t starts at base + 2 t
};

// Runs dropout_kept_bits<kTiles> on an emulated warp, in the mma C fragment's layout, and counts
// the elements whose bit differs from dropout_keeps.
template <int kTiles>
int64_t mismatches(const BitsCase& c, int64_t* kept) {
  const uint32_t threshold = dropout_keep_threshold(c.p);
  EmulatedWarp warp;
  emulated_warp = &warp;
  std::vector<uint32_t> bits(32);
  {
    std::vector<std::jthread> lanes;
    for (uint32_t lane = 0; lane < 32; ++lane) {
      lanes.emplace_back([&, lane] {
        emulated_lane = lane;
        bits[lane] =
            cuda_sm80::dropout_kept_bits<kTiles>(c.seed, c.offset, threshold, c.batch_head,
                                                 c.first_row + lane / 4, c.base + 2 * (lane % 4));
      });
    }
  }
  emulated_warp = nullptr;
  int64_t wrong = 0;
  for (uint32_t lane = 0; lane < 32; ++lane) {
    for (int j = 0; j < kTiles; ++j) {
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t key = c.base + 2 * (lane % 4) + 8 * static_cast<uint32_t>(j) + e;
        const bool expected =
            dropout_keeps(c.seed, c.offset, c.batch_head, c.first_row + lane / 4, key, threshold);
        const bool actual = (bits[lane] >> (2 * j + e)) & 1u;
        *kept += actual ? 1 : 0;
        wrong += expected != actual ? 1 : 0;
      }
    }
  }
  return wrong;
}

// Every tile count the kernels use (4, 8, 16: whole groups of four) and the remainder path
// (1, 2, 3, 6), each on a table of keys, rows and probabilities.
TEST(DropoutBitsHost, QuadTransposeMatchesPhilox) {
  const BitsCase cases[] = {
      {7, 3, 0.1f, 5, 0, 0},
      {7, 3, 0.5f, 5, 100, 8},
      {0x0123456789abcdefull, 1ull << 40 | 9, 0.3f, 123, 4093, 64},
      {0xfeedfacecafebeefull, 77, 0.9f, 0, 70000, 8 * 1000},
      {1, 2, 0.0f, 9, 7, 24},
  };
  for (const BitsCase& c : cases) {
    SCOPED_TRACE(testing::Message() << "p " << c.p << " base " << c.base << " row " << c.first_row);
    int64_t kept = 0;
    EXPECT_EQ(mismatches<1>(c, &kept), 0);
    EXPECT_EQ(mismatches<2>(c, &kept), 0);
    EXPECT_EQ(mismatches<3>(c, &kept), 0);
    EXPECT_EQ(mismatches<4>(c, &kept), 0);
    EXPECT_EQ(mismatches<6>(c, &kept), 0);
    EXPECT_EQ(mismatches<8>(c, &kept), 0);
    EXPECT_EQ(mismatches<16>(c, &kept), 0);
    const int64_t total = 32 * 2 * (1 + 2 + 3 + 4 + 6 + 8 + 16);
    if (c.p == 0.0f) {
      EXPECT_EQ(kept, total);
    } else {  // both decisions occur, so the bits are not trivially all set or all clear
      EXPECT_GT(kept, 0);
      EXPECT_LT(kept, total);
    }
  }
}

}  // namespace
}  // namespace flashattn
