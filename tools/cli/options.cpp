// Command-line flags -> Problem: parsing, defaults that depend on other flags, device choice.
#include "options.h"

#include <CLI/CLI.hpp>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "flashattn/flashattn.h"

namespace flashattn::cli {
namespace {

// "len_q[:len_k],..." -> one SequenceLengths per sequence (len_k defaults to len_q).
std::vector<SequenceLengths> parse_sequences(const std::string& text) {
  std::vector<SequenceLengths> sequences;
  for (const std::string& item : CLI::detail::split(text, ',')) {
    const std::vector<std::string> parts = CLI::detail::split(item, ':');
    if (item.empty() || parts.size() > 2) {
      throw CLI::ValidationError("--varlen", "expected len_q[:len_k],... but got '" + text + "'");
    }
    SequenceLengths lengths;
    if (!CLI::detail::lexical_cast(parts[0], lengths.q) ||
        (parts.size() == 2 && !CLI::detail::lexical_cast(parts[1], lengths.k)) || lengths.q < 0 ||
        lengths.k < 0) {
      throw CLI::ValidationError("--varlen",
                                 "'" + item + "' is not len_q[:len_k] with lengths >= 0");
    }
    if (parts.size() == 1) lengths.k = lengths.q;
    sequences.push_back(lengths);
  }
  return sequences;
}

// Resolves --device and --backend together; --backend cpu / cuda imply their device.
void resolve_device(const std::string& device_name, const std::string& backend_name,
                    Problem* problem) {
  Device implied = cuda_available() ? Device::cuda : Device::cpu;
  if (backend_name == "cpu" || backend_name == "cpu_reference") implied = Device::cpu;
  if (backend_name == "cuda") implied = Device::cuda;
  const bool backend_names_device = backend_name != "auto";
  if (device_name != "auto") {
    const Device asked = device_name == "cuda" ? Device::cuda : Device::cpu;
    if (backend_names_device && asked != implied) {
      throw CLI::ValidationError(
          "--backend", "backend " + backend_name + " cannot run on --device " + device_name);
    }
    implied = asked;
  }
  if (implied == Device::cuda && !cuda_available()) {
    throw CLI::ValidationError(device_name != "auto" ? "--device" : "--backend",
                               "cuda asked for, but this build has no CUDA backend or no GPU "
                               "is usable");
  }
  problem->device = implied;
  problem->backend = backend_name == "cpu"             ? Backend::cpu_tiled
                     : backend_name == "cpu_reference" ? Backend::cpu_reference
                                                       : Backend::automatic;
}

}  // namespace

std::optional<int> parse_options(int argc, char** argv, Problem* problem) {
  CLI::App app{
      "flashattn: runs one attention problem (forward, then backward) on the chosen backend,\n"
      "times it and optionally checks it against the fp64 reference.\n"
      "Without flags: batch 2, 16 heads, seqlen 2048, head_dim 64, causal, bf16."};
  app.get_formatter()->column_width(34);
  app.set_version_flag("--version", std::string("flashattn ") + version());

  Problem& p = *problem;
  int64_t seqlen = p.seqlen_q;
  std::string varlen_text;
  std::string backend_name = "auto";
  std::string device_name = "auto";
  int iters = 0;
  int warmup = -1;
  std::string dtype_name = "bf16";

  app.add_option("--batch", p.batch, "Sequences per batch")->capture_default_str();
  app.add_option("--heads", p.heads_q, "Query heads")->capture_default_str();
  app.add_option("--heads-kv", p.heads_kv, "Key/value heads (MQA/GQA); default: --heads");
  auto* seqlen_option = app.add_option("--seqlen", seqlen, "Sets both --seqlen-q and --seqlen-k")
                            ->capture_default_str();
  auto* seqlen_q_option = app.add_option("--seqlen-q", p.seqlen_q, "Query length");
  auto* seqlen_k_option = app.add_option("--seqlen-k", p.seqlen_k, "Key/value length");
  app.add_option("--head-dim", p.head_dim, "Head dimension of q and k")->capture_default_str();
  app.add_option("--head-dim-v", p.head_dim_v, "Head dimension of v; default: --head-dim");
  app.add_option("--dtype", dtype_name, "Element type (fp32 on the CPU backends only)")
      ->check(CLI::IsMember({"fp16", "bf16", "fp32"}))
      ->capture_default_str();
  app.add_flag("--causal,!--no-causal", p.causal,
               "Causal mask, aligned bottom-right (default on; --window-right alone turns it off)");
  app.add_option("--window-left", p.window_left, "Sliding window: keys to the left, -1 unbounded")
      ->capture_default_str();
  auto* window_right_option = app.add_option("--window-right", p.window_right,
                                             "Sliding window: keys to the right, -1 unbounded")
                                  ->capture_default_str();
  app.add_option("--softcap", p.softcap, "Scores become c*tanh(s/c); 0 disables")
      ->capture_default_str();
  app.add_flag("--alibi", p.alibi, "ALiBi bias with the standard geometric slopes per head");
  app.add_option("--dropout", p.dropout_p, "Dropout probability on the attention weights")
      ->capture_default_str();
  app.add_option("--seed", p.seed, "Dropout Philox seed (also seeds the random inputs)")
      ->capture_default_str();
  app.add_option("--offset", p.offset, "Dropout Philox offset")->capture_default_str();
  auto* varlen_option =
      app.add_option("--varlen", varlen_text,
                     "Packed variable-length batch \"len_q[:len_k],...\" (one entry per sequence)");
  app.add_option("--scale", p.softmax_scale, "Softmax scale; default 1/sqrt(head_dim)");
  app.add_option("--backend", backend_name, "auto, cpu (tiled), cpu_reference (fp64 oracle), cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cpu_reference", "cuda"}))
      ->capture_default_str();
  app.add_option("--device", device_name, "auto (cuda when a GPU is usable), cpu, cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--threads", p.threads, "CPU threads, 0 for the OpenMP default")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--iters", iters, "Timed runs, the median is reported (default 20 cuda, 3 cpu)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed runs first (default 5 cuda, 1 cpu)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("!--no-backward", p.run_backward, "Forward only");
  app.add_flag("--deterministic", p.deterministic, "Bitwise reproducible backward");
  app.add_flag("--check", p.check,
               "Compare out, LSE and dq/dk/dv with the fp64 reference; exit 1 on FAIL");
  app.add_option("--json", p.json_path, "Write the results as JSON to FILE ('-': stdout)");

  varlen_option->excludes(app.get_option("--batch"))
      ->excludes(seqlen_option)
      ->excludes(seqlen_q_option)
      ->excludes(seqlen_k_option);

  try {
    app.parse(argc, argv);
    p.dtype = dtype_name == "fp16" ? DType::fp16 : dtype_name == "fp32" ? DType::fp32 : DType::bf16;
    const bool heads_kv_given = app.count("--heads-kv") > 0;
    const bool head_dim_v_given = app.count("--head-dim-v") > 0;
    if (!heads_kv_given) p.heads_kv = p.heads_q;
    if (!head_dim_v_given) p.head_dim_v = p.head_dim;
    if (seqlen_q_option->count() == 0) p.seqlen_q = seqlen;
    if (seqlen_k_option->count() == 0) p.seqlen_k = seqlen;
    if (window_right_option->count() > 0 && app.count("--causal") == 0) p.causal = false;
    if (!varlen_text.empty()) {
      p.sequences = parse_sequences(varlen_text);
      p.batch = static_cast<int64_t>(p.sequences.size());
      p.seqlen_q = 0;
      p.seqlen_k = 0;
      for (const SequenceLengths& lengths : p.sequences) {
        p.seqlen_q = std::max(p.seqlen_q, lengths.q);
        p.seqlen_k = std::max(p.seqlen_k, lengths.k);
      }
    }
    // Sizes drive allocation here, so they are checked before the library sees them.
    for (const auto& [flag, value] : {std::pair{"--batch", p.batch},
                                      {"--heads", p.heads_q},
                                      {"--heads-kv", p.heads_kv},
                                      {"--head-dim", p.head_dim},
                                      {"--head-dim-v", p.head_dim_v}}) {
      if (value < 1) throw CLI::ValidationError(flag, "must be >= 1, got " + std::to_string(value));
    }
    for (const auto& [flag, value] :
         {std::pair{"--seqlen-q", p.seqlen_q}, {"--seqlen-k", p.seqlen_k}}) {
      if (value < 0) throw CLI::ValidationError(flag, "must be >= 0, got " + std::to_string(value));
    }
    // A JSON path that cannot be written fails now, not after a long run.
    if (!p.json_path.empty() && p.json_path != "-" && !std::ofstream(p.json_path, std::ios::app)) {
      throw CLI::ValidationError("--json", "cannot write " + p.json_path);
    }
    resolve_device(device_name, backend_name, &p);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? 0 : 2;
  }

  const bool on_gpu = p.device == Device::cuda;
  p.iters = iters > 0 ? iters : (on_gpu ? 20 : 3);
  p.warmup = warmup >= 0 ? warmup : (on_gpu ? 5 : 1);
  return std::nullopt;
}

}  // namespace flashattn::cli
