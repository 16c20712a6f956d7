// Causal attention forward and backward on the CPU through the public API, and what a bad
// argument looks like.
#include <flashattn/flashattn.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const int64_t batch = 2, seqlen = 128, heads = 4, head_dim = 64;
  const int64_t elements = batch * seqlen * heads * head_dim;
  std::vector<float> q(elements), k(elements), v(elements), dout(elements);
  for (int64_t i = 0; i < elements; ++i) {
    q[i] = std::sin(0.37f * i);
    k[i] = std::cos(0.11f * i);
    v[i] = std::sin(0.05f * i + 1.0f);
    dout[i] = std::cos(0.23f * i);
  }
  std::vector<float> out(elements), dq(elements), dk(elements), dv(elements);
  std::vector<float> lse(batch * heads * seqlen);

  // Contiguous [batch, seqlen, heads, head_dim]; strides count elements.
  auto dense = [&](std::vector<float>& data) {
    return flashattn::TensorRef{data.data(), seqlen * heads * head_dim, heads * head_dim, head_dim,
                                1};
  };

  flashattn::ForwardParams forward;
  forward.device = flashattn::Device::cpu;
  forward.dtype = flashattn::DType::fp32;  // fp16 / bf16 take uint16_t storage
  forward.batch = batch;
  forward.seqlen_q = forward.seqlen_k = seqlen;
  forward.heads_q = forward.heads_kv = heads;
  forward.head_dim = head_dim;
  forward.q = dense(q);
  forward.k = dense(k);
  forward.v = dense(v);
  forward.out = dense(out);
  forward.lse.data = lse.data();  // zero strides: contiguous [batch, heads, seqlen]
  forward.causal = true;          // softmax_scale defaults to 1/sqrt(head_dim)

  flashattn::Backend backend;
  if (flashattn::Status status = flashattn::select_backend(forward, &backend); !status.ok()) {
    std::fprintf(stderr, "select_backend: %s\n", status.message().c_str());
    return 1;
  }
  if (flashattn::Status status = flashattn::forward(forward); !status.ok()) {
    std::fprintf(stderr, "forward: %s\n", status.message().c_str());
    return 1;
  }

  // The backward takes the same problem plus out, dout and the forward's LSE.
  flashattn::BackwardParams backward;
  static_cast<flashattn::AttentionArgs&>(backward) = forward;
  backward.out = forward.out;
  backward.lse = forward.lse;
  backward.dout = dense(dout);
  backward.dq = dense(dq);
  backward.dk = dense(dk);
  backward.dv = dense(dv);
  if (flashattn::Status status = flashattn::backward(backward); !status.ok()) {
    std::fprintf(stderr, "backward: %s\n", status.message().c_str());
    return 1;
  }

  std::printf("flashattn %s, backend %s\n", flashattn::version(), flashattn::to_string(backend));
  std::printf("out[0, 0, 0, 0:4] = %.5f %.5f %.5f %.5f\n", out[0], out[1], out[2], out[3]);
  std::printf("lse[0, 0, 0:2]    = %.5f %.5f\n", lse[0], lse[1]);
  std::printf("dq[0, 5, 0, 0]    = %.5f\n", dq[5 * heads * head_dim]);

  // Every argument is checked before any work; the error names it. Nothing is written.
  flashattn::ForwardParams bad = forward;
  bad.heads_kv = 3;
  const flashattn::Status status = flashattn::forward(bad);
  std::printf("heads_kv = 3 -> %s: %s\n", flashattn::to_string(status.code()),
              status.message().c_str());
  return status.code() == flashattn::StatusCode::invalid_argument ? 0 : 1;
}
