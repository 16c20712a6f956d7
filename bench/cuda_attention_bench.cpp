// Google Benchmark of the CUDA attention backend (cuda_sm80) through the public C++ API.
//
// BM_CudaForward / BM_CudaBackward / BM_CudaBackwardDeterministic over the FlashAttention-2
// grid: 16384 tokens (batch = 16384 / seqlen), hidden 2048 (heads = 2048 / head_dim), head_dim
// 64/128/256, seqlen 512..16384, causal and not, bf16 and fp16; dense contiguous
// [batch, seqlen, heads, dim] tensors in device memory, random normal inputs. The reported time
// is GPU time of one call, measured with CUDA events on a stream of our own (UseManualTime):
// launch overhead included, host-side setup (allocation, inputs, the backward's forward and
// workspace) not. TFLOP/s as FlashAttention-2 counts them (forward 4*b*h*s*s*d, half for
// causal; backward 2.5x the forward). Each case makes one untimed call first (lazy module
// loading). Without a CUDA device, or in a build without CUDA, every case is skipped with
// "no CUDA device: ..." and the program exits 0.
//
// Build and run (on a GPU machine; FLASHATTN_HDIMS / _DTYPES narrow the instance set, and cases
// outside it are skipped with the library's message):
//   cmake -B build -G Ninja -DFLASHATTN_CUDA=ON -DFLASHATTN_ARCHS=90 -DFLASHATTN_BUILD_BENCH=ON
//   ninja -C build cuda_attention_bench
//   build/bench/cuda_attention_bench --benchmark_filter='/bf16/dim:128/seqlen:(4096|16384)/'
// Case names: BM_CudaForward/bf16/dim:128/seqlen:4096/causal:1.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "flashattn/flashattn.h"

#if defined(FLASHATTN_WITH_CUDA)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>
#include <random>
#include <vector>
#endif

namespace {

using flashattn::DType;

constexpr int64_t kTokens = 16384;  // batch * seqlen
constexpr int64_t kHidden = 2048;   // heads * head_dim

enum class Pass { forward, backward, backward_deterministic };

// One point of the grid. Every operand then holds kTokens * kHidden elements.
struct Shape {
  DType dtype;
  int64_t batch, seqlen, heads, dim;
  bool causal;

  double forward_flops() const {
    const double flops = 4.0 * static_cast<double>(batch * heads) * static_cast<double>(seqlen) *
                         static_cast<double>(seqlen) * static_cast<double>(dim);
    return causal ? flops / 2 : flops;
  }
};

// Args: head_dim, seqlen, causal.
Shape fa2_shape(const benchmark::State& state, DType dtype) {
  const int64_t dim = state.range(0), seqlen = state.range(1);
  return Shape{dtype, kTokens / seqlen, seqlen, kHidden / dim, dim, state.range(2) != 0};
}

void set_label(benchmark::State& state, const Shape& shape) {
  state.SetLabel(std::string(flashattn::to_string(shape.dtype)) +
                 " b=" + std::to_string(shape.batch) + " h=" + std::to_string(shape.heads) +
                 " s=" + std::to_string(shape.seqlen) + " d=" + std::to_string(shape.dim) +
                 (shape.causal ? " causal" : ""));
}

#if defined(FLASHATTN_WITH_CUDA)

// Empty when a CUDA device is present, otherwise why not (asked once).
const std::string& missing_device() {
  static const std::string reason = [] {
    int count = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(error);
    if (count == 0) return std::string("no CUDA device: cudaGetDeviceCount found none");
    return std::string();
  }();
  return reason;
}

// "what: CUDA error string", or empty on success.
std::string cuda_failure(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return {};
  return std::string(what) + ": " + cudaGetErrorString(error);
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }

  cudaError_t allocate(size_t bytes) { return cudaMalloc(&data_, bytes); }
  void* get() const { return data_; }

 private:
  void* data_ = nullptr;
};

// Random normal q, k, v and dout of one dtype on the host, kept across cases (every shape of the
// grid has the same element count) and regenerated only when the dtype changes.
const std::vector<uint16_t>& host_inputs(DType dtype, int which) {
  static DType cached_dtype = DType::fp32;  // fp32: none yet (the CUDA grid has no fp32)
  static std::vector<uint16_t> tensors[4];
  if (cached_dtype != dtype) {
    for (int t = 0; t < 4; ++t) {
      std::mt19937 engine(static_cast<uint32_t>(t + 1));
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<uint16_t>& bits = tensors[t];
      bits.resize(static_cast<size_t>(kTokens * kHidden));
      for (uint16_t& element : bits) {
        const float value = normal(engine);
        if (dtype == DType::fp16) {
          const __half half = __float2half_rn(value);
          std::memcpy(&element, &half, sizeof(element));
        } else {
          const __nv_bfloat16 bf16 = __float2bfloat16_rn(value);
          std::memcpy(&element, &bf16, sizeof(element));
        }
      }
    }
    cached_dtype = dtype;
  }
  return tensors[which];
}

flashattn::TensorRef dense_ref(const DeviceBuffer& buffer, const Shape& shape) {
  return flashattn::TensorRef{buffer.get(), shape.seqlen * shape.heads * shape.dim,
                              shape.heads * shape.dim, shape.dim, 1};
}

// Device tensors, stream and events of one case; everything is released when the case ends.
struct DeviceProblem {
  Shape shape;
  DeviceBuffer q, k, v, out, dout, dq, dk, dv, lse, workspace;
  size_t workspace_bytes = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;

  explicit DeviceProblem(const Shape& problem_shape) : shape(problem_shape) {}
  DeviceProblem(const DeviceProblem&) = delete;
  DeviceProblem& operator=(const DeviceProblem&) = delete;
  ~DeviceProblem() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  // Allocates and fills the operands; returns the first failure, empty on success.
  std::string allocate() {
    std::string failure = cuda_failure(cudaStreamCreate(&stream), "cudaStreamCreate");
    if (failure.empty()) failure = cuda_failure(cudaEventCreate(&start), "cudaEventCreate");
    if (failure.empty()) failure = cuda_failure(cudaEventCreate(&stop), "cudaEventCreate");
    const size_t bytes = static_cast<size_t>(kTokens * kHidden) * sizeof(uint16_t);
    for (DeviceBuffer* buffer : {&q, &k, &v, &out, &dout, &dq, &dk, &dv}) {
      if (failure.empty()) failure = cuda_failure(buffer->allocate(bytes), "cudaMalloc");
    }
    const size_t lse_bytes = static_cast<size_t>(kTokens * shape.heads) * sizeof(float);
    if (failure.empty()) failure = cuda_failure(lse.allocate(lse_bytes), "cudaMalloc");
    const DeviceBuffer* inputs[4] = {&q, &k, &v, &dout};
    for (int t = 0; t < 4 && failure.empty(); ++t) {
      const std::vector<uint16_t>& host = host_inputs(shape.dtype, t);
      failure = cuda_failure(
          cudaMemcpy(inputs[t]->get(), host.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    }
    return failure;
  }

  flashattn::AttentionArgs args() const {
    flashattn::AttentionArgs args;
    args.device = flashattn::Device::cuda;
    args.backend = flashattn::Backend::cuda_sm80;
    args.dtype = shape.dtype;
    args.batch = shape.batch;
    args.seqlen_q = args.seqlen_k = shape.seqlen;
    args.heads_q = args.heads_kv = shape.heads;
    args.head_dim = shape.dim;
    args.causal = shape.causal;
    args.q = dense_ref(q, shape);
    args.k = dense_ref(k, shape);
    args.v = dense_ref(v, shape);
    args.stream = stream;
    return args;
  }

  flashattn::ForwardParams forward_params() const {
    flashattn::ForwardParams params;
    static_cast<flashattn::AttentionArgs&>(params) = args();
    params.out = dense_ref(out, shape);
    params.lse.data = static_cast<float*>(lse.get());
    return params;
  }

  flashattn::BackwardParams backward_params(bool deterministic) const {
    flashattn::BackwardParams params;
    static_cast<flashattn::AttentionArgs&>(params) = args();
    params.out = dense_ref(out, shape);
    params.dout = dense_ref(dout, shape);
    params.lse.data = static_cast<float*>(lse.get());
    params.dq = dense_ref(dq, shape);
    params.dk = dense_ref(dk, shape);
    params.dv = dense_ref(dv, shape);
    params.deterministic = deterministic;
    params.workspace = workspace.get();
    params.workspace_bytes = workspace_bytes;
    return params;
  }

  // The backward's inputs: out and LSE of one forward, then the workspace it asks for.
  std::string prepare_backward(bool deterministic) {
    const flashattn::Status forward_status = flashattn::forward(forward_params());
    if (!forward_status.ok()) return "forward: " + forward_status.message();
    std::string failure = cuda_failure(cudaStreamSynchronize(stream), "forward");
    if (!failure.empty()) return failure;
    size_t bytes = 0;
    const flashattn::Status size_status =
        flashattn::backward_workspace_size(backward_params(deterministic), &bytes);
    if (!size_status.ok()) return "backward_workspace_size: " + size_status.message();
    if (bytes > 0) failure = cuda_failure(workspace.allocate(bytes), "cudaMalloc (workspace)");
    if (failure.empty()) workspace_bytes = bytes;
    return failure;
  }
};

// Times `call` (which enqueues on problem.stream) with events around each call.
template <typename Call>
void time_calls(benchmark::State& state, DeviceProblem& problem, const char* name, Call call,
                double flops) {
  const flashattn::Status warmup = call();
  if (!warmup.ok()) {
    state.SkipWithError((std::string(name) + ": " + warmup.message()).c_str());
    return;
  }
  std::string failure = cuda_failure(cudaStreamSynchronize(problem.stream), name);
  if (!failure.empty()) {
    state.SkipWithError(failure.c_str());
    return;
  }
  double seconds = 0;
  for (auto _ : state) {
    failure = cuda_failure(cudaEventRecord(problem.start, problem.stream), "cudaEventRecord");
    const flashattn::Status status = call();
    if (!status.ok()) failure = std::string(name) + ": " + status.message();
    if (failure.empty()) {
      failure = cuda_failure(cudaEventRecord(problem.stop, problem.stream), "cudaEventRecord");
    }
    if (failure.empty()) failure = cuda_failure(cudaEventSynchronize(problem.stop), name);
    float milliseconds = 0;
    if (failure.empty()) {
      failure = cuda_failure(cudaEventElapsedTime(&milliseconds, problem.start, problem.stop),
                             "cudaEventElapsedTime");
    }
    if (!failure.empty()) {
      state.SkipWithError(failure.c_str());
      break;
    }
    state.SetIterationTime(milliseconds * 1e-3);
    seconds += milliseconds * 1e-3;
  }
  if (seconds > 0) {
    state.counters["TFLOP/s"] = flops * static_cast<double>(state.iterations()) / seconds * 1e-12;
  }
}

void run_case(benchmark::State& state, DType dtype, Pass pass) {
  const Shape shape = fa2_shape(state, dtype);
  set_label(state, shape);
  if (!missing_device().empty()) {
    state.SkipWithError(missing_device().c_str());
    return;
  }
  DeviceProblem problem(shape);
  std::string failure = problem.allocate();
  if (failure.empty() && pass != Pass::forward) {
    failure = problem.prepare_backward(pass == Pass::backward_deterministic);
  }
  if (!failure.empty()) {
    state.SkipWithError(failure.c_str());
    return;
  }
  if (pass == Pass::forward) {
    const flashattn::ForwardParams params = problem.forward_params();
    time_calls(
        state, problem, "forward", [&] { return flashattn::forward(params); },
        shape.forward_flops());
  } else {
    const flashattn::BackwardParams params =
        problem.backward_params(pass == Pass::backward_deterministic);
    time_calls(
        state, problem, "backward", [&] { return flashattn::backward(params); },
        2.5 * shape.forward_flops());
  }
}

#else  // a build without CUDA: nothing can run, every case says so

void run_case(benchmark::State& state, DType dtype, Pass) {
  set_label(state, fa2_shape(state, dtype));
  state.SkipWithError("no CUDA device: this build has no CUDA backend (configured without CUDA)");
}

#endif

void BM_CudaForward(benchmark::State& state, DType dtype) {
  run_case(state, dtype, Pass::forward);
}

void BM_CudaBackward(benchmark::State& state, DType dtype) {
  run_case(state, dtype, Pass::backward);
}

void BM_CudaBackwardDeterministic(benchmark::State& state, DType dtype) {
  run_case(state, dtype, Pass::backward_deterministic);
}

// Grouped as FlashAttention-2 plots them: causal, then head_dim, seqlen growing fastest.
void fa2_grid(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"dim", "seqlen", "causal"});
  for (int64_t causal : {0, 1}) {
    for (int64_t dim : {64, 128, 256}) {
      for (int64_t seqlen : {512, 1024, 2048, 4096, 8192, 16384}) {
        bench->Args({dim, seqlen, causal});
      }
    }
  }
  bench->Unit(benchmark::kMillisecond)->UseManualTime();
}

// bf16 first, then fp16: the host inputs are regenerated (seconds) only when the dtype changes.
BENCHMARK_CAPTURE(BM_CudaForward, bf16, DType::bf16)->Apply(fa2_grid);
BENCHMARK_CAPTURE(BM_CudaBackward, bf16, DType::bf16)->Apply(fa2_grid);
BENCHMARK_CAPTURE(BM_CudaBackwardDeterministic, bf16, DType::bf16)->Apply(fa2_grid);
BENCHMARK_CAPTURE(BM_CudaForward, fp16, DType::fp16)->Apply(fa2_grid);
BENCHMARK_CAPTURE(BM_CudaBackward, fp16, DType::fp16)->Apply(fa2_grid);
BENCHMARK_CAPTURE(BM_CudaBackwardDeterministic, fp16, DType::fp16)->Apply(fa2_grid);

}  // namespace

BENCHMARK_MAIN();
