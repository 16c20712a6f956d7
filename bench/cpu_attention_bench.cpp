// Google Benchmark of the CPU attention backends through the public C++ API.
//
// BM_Forward / BM_Backward: batch 1, heads 8, over seqlen x head_dim x causal x dtype, the
// shapes of the CPU target in bench/NOTES.md, reporting TFLOP/s as FlashAttention-2 counts
// them (forward 4*b*h*sq*sk*d, half for causal; backward 2.5x the forward). BM_ForwardMemory:
// one head of head_dim 64 at long seqlens, one iteration, for peak-RSS measurements
// (bench/cpu_memory.sh). BM_BackwardMqa: the backward of an MQA problem. Threads:
// FLASHATTN_BENCH_THREADS (default 2, the CI machine's cores).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flashattn/flashattn.h"

namespace {

using flashattn::DType;

int bench_threads() {
  const char* value = std::getenv("FLASHATTN_BENCH_THREADS");
  return value != nullptr ? std::atoi(value) : 2;
}

// Random bits of the right dtype for a dense [batch, seqlen, heads, dim] tensor.
std::vector<uint16_t> random_tensor(int64_t elements, DType dtype, uint32_t seed) {
  std::mt19937 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t words = dtype == DType::fp32 ? 2 * elements : elements;
  std::vector<uint16_t> data(static_cast<size_t>(words));
  for (int64_t i = 0; i < elements; ++i) {
    const float value = normal(engine);
    if (dtype == DType::fp32) {
      std::memcpy(&data[static_cast<size_t>(2 * i)], &value, sizeof(value));
    } else {
      uint32_t bits;  // bf16: truncation is fine for benchmark inputs
      std::memcpy(&bits, &value, sizeof(bits));
      data[static_cast<size_t>(i)] = static_cast<uint16_t>(bits >> 16);
    }
  }
  return data;
}

flashattn::TensorRef dense_ref(void* data, int64_t seqlen, int64_t heads, int64_t dim) {
  return flashattn::TensorRef{data, seqlen * heads * dim, heads * dim, dim, 1};
}

// One benchmark problem: dense tensors, LSE, and the args both directions share.
struct Problem {
  flashattn::AttentionArgs args;
  std::vector<uint16_t> q, k, v, out, dout, dq, dk, dv;
  std::vector<float> lse;

  Problem(DType dtype, int64_t heads, int64_t seqlen, int64_t dim, bool causal,
          int64_t heads_kv = 0) {
    if (heads_kv == 0) heads_kv = heads;
    args.dtype = dtype;
    args.batch = 1;
    args.seqlen_q = args.seqlen_k = seqlen;
    args.heads_q = heads;
    args.heads_kv = heads_kv;
    args.head_dim = dim;
    args.causal = causal;
    args.backend = flashattn::Backend::cpu_tiled;
    args.num_threads = bench_threads();
    const int64_t elements = seqlen * heads * dim;
    const int64_t kv_elements = seqlen * heads_kv * dim;
    q = random_tensor(elements, dtype, 1);
    k = random_tensor(kv_elements, dtype, 2);
    v = random_tensor(kv_elements, dtype, 3);
    dout = random_tensor(elements, dtype, 4);
    out.resize(q.size());
    dq.resize(q.size());
    dk.resize(k.size());
    dv.resize(v.size());
    lse.resize(static_cast<size_t>(heads * seqlen));
    args.q = dense_ref(q.data(), seqlen, heads, dim);
    args.k = dense_ref(k.data(), seqlen, heads_kv, dim);
    args.v = dense_ref(v.data(), seqlen, heads_kv, dim);
  }

  flashattn::ForwardParams forward_params() {
    flashattn::ForwardParams params;
    static_cast<flashattn::AttentionArgs&>(params) = args;
    params.out = dense_ref(out.data(), args.seqlen_q, args.heads_q, args.head_dim);
    params.lse.data = lse.data();
    return params;
  }

  flashattn::BackwardParams backward_params() {
    flashattn::BackwardParams params;
    static_cast<flashattn::AttentionArgs&>(params) = args;
    const int64_t s = args.seqlen_q, h = args.heads_q, d = args.head_dim;
    params.out = dense_ref(out.data(), s, h, d);
    params.dout = dense_ref(dout.data(), s, h, d);
    params.lse.data = lse.data();
    params.dq = dense_ref(dq.data(), s, h, d);
    params.dk = dense_ref(dk.data(), s, args.heads_kv, d);
    params.dv = dense_ref(dv.data(), s, args.heads_kv, d);
    params.deterministic = true;
    return params;
  }

  double forward_flops() const {
    const double flops = 4.0 * args.batch * args.heads_q * static_cast<double>(args.seqlen_q) *
                         static_cast<double>(args.seqlen_k) * args.head_dim;
    return args.causal ? flops / 2 : flops;
  }
};

DType dtype_of(int64_t code) {
  return code == 0 ? DType::fp32 : DType::bf16;
}

void set_label(benchmark::State& state, const Problem& problem) {
  state.SetLabel(std::string(flashattn::to_string(problem.args.dtype)) +
                 " s=" + std::to_string(problem.args.seqlen_q) + " d=" +
                 std::to_string(problem.args.head_dim) + (problem.args.causal ? " causal" : "") +
                 " threads=" + std::to_string(problem.args.num_threads));
}

// Args: dtype (0 fp32, 1 bf16), seqlen, head_dim, causal.
void BM_Forward(benchmark::State& state) {
  Problem problem(dtype_of(state.range(0)), 8, state.range(1), state.range(2), state.range(3) != 0);
  const flashattn::ForwardParams params = problem.forward_params();
  for (auto _ : state) {
    const flashattn::Status status = flashattn::forward(params);
    if (!status.ok()) state.SkipWithError(status.message().c_str());
  }
  state.counters["TFLOP/s"] = benchmark::Counter(problem.forward_flops() * 1e-12,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  set_label(state, problem);
}

// Times the backward of `problem` (its forward runs once first, for out and LSE).
void time_backward(benchmark::State& state, Problem& problem) {
  const flashattn::Status forward_status = flashattn::forward(problem.forward_params());
  if (!forward_status.ok()) state.SkipWithError(forward_status.message().c_str());
  const flashattn::BackwardParams params = problem.backward_params();
  for (auto _ : state) {
    const flashattn::Status status = flashattn::backward(params);
    if (!status.ok()) state.SkipWithError(status.message().c_str());
  }
  state.counters["TFLOP/s"] = benchmark::Counter(2.5 * problem.forward_flops() * 1e-12,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  set_label(state, problem);
}

void BM_Backward(benchmark::State& state) {
  Problem problem(dtype_of(state.range(0)), 8, state.range(1), state.range(2), state.range(3) != 0);
  time_backward(state, problem);
}

// Args: dtype, seqlen. MQA (8 query heads, one kv head), head_dim 64: the backward's work
// items are then slices of the group rather than (batch, kv head) pairs.
void BM_BackwardMqa(benchmark::State& state) {
  Problem problem(dtype_of(state.range(0)), 8, state.range(1), 64, false, 1);
  time_backward(state, problem);
}

// Arg: seqlen. One head, head_dim 64, fp32, one iteration: the process's peak RSS is then
// the inputs plus whatever the forward allocates.
void BM_ForwardMemory(benchmark::State& state) {
  Problem problem(DType::fp32, 1, state.range(0), 64, false);
  const flashattn::ForwardParams params = problem.forward_params();
  for (auto _ : state) {
    const flashattn::Status status = flashattn::forward(params);
    if (!status.ok()) state.SkipWithError(status.message().c_str());
  }
  set_label(state, problem);
}

void target_shapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"dtype", "seqlen", "dim", "causal"});
  for (int64_t dtype : {0, 1}) {
    for (int64_t seqlen : {1024, 4096}) {
      for (int64_t dim : {64, 128}) {
        for (int64_t causal : {0, 1}) bench->Args({dtype, seqlen, dim, causal});
      }
    }
  }
  bench->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
}

BENCHMARK(BM_Forward)->Apply(target_shapes);
BENCHMARK(BM_Backward)->Apply(target_shapes);
BENCHMARK(BM_BackwardMqa)
    ->ArgNames({"dtype", "seqlen"})
    ->Args({0, 2048})
    ->Args({1, 2048})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ForwardMemory)
    ->ArgName("seqlen")
    ->Arg(8192)
    ->Arg(16384)
    ->Arg(32768)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
