// The results of a run: the text report on stdout and the JSON document.
#include "report.h"

#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "flashattn/flashattn.h"

namespace flashattn::cli {
namespace {

double tflops(double flops, const Timing& timing) {
  const double seconds = timing.median_ms() * 1e-3;
  return seconds > 0 ? flops / seconds * 1e-12 : 0.0;
}

std::string device_text(const Problem& problem) {
  if (problem.device == Device::cuda) return "cuda";
  const int threads = problem.cpu_threads();
  return fmt::format("cpu, {} thread{}", threads, threads == 1 ? "" : "s");
}

std::string shape_text(const Problem& problem) {
  std::string text =
      problem.varlen()
          ? fmt::format("varlen {} sequences (max seqlen {}/{}, total {}/{})", problem.batch,
                        problem.seqlen_q, problem.seqlen_k, problem.total_q(), problem.total_k())
          : fmt::format("batch {}, seqlen {}/{}", problem.batch, problem.seqlen_q,
                        problem.seqlen_k);
  text += fmt::format(", heads {}", problem.heads_q);
  if (problem.heads_kv != problem.heads_q) text += fmt::format("/{} kv", problem.heads_kv);
  text += fmt::format(", head_dim {}", problem.head_dim);
  if (problem.head_dim_v != problem.head_dim) text += fmt::format("/{} v", problem.head_dim_v);
  return text;
}

std::string options_text(const Problem& problem) {
  std::string text = problem.causal ? "causal" : "non-causal";
  if (problem.has_window()) {
    text += fmt::format(", window ({}, {})", problem.window_left,
                        problem.causal ? 0 : problem.window_right);
  }
  if (problem.softcap > 0) text += fmt::format(", softcap {}", problem.softcap);
  if (problem.alibi) text += ", alibi";
  if (problem.dropout_p > 0) {
    text += fmt::format(", dropout {} (seed {}, offset {})", problem.dropout_p, problem.seed,
                        problem.offset);
  }
  if (!std::isnan(problem.softmax_scale)) text += fmt::format(", scale {}", problem.softmax_scale);
  if (problem.deterministic) text += ", deterministic";
  return text;
}

void print_timing(const char* name, const Timing& timing, double flops) {
  fmt::print("{:<9} {:>10.3f} ms  (median of {}, {} warm-up; min {:.3f} ms)  {:.3g} TFLOP/s\n",
             name, timing.median_ms(), timing.milliseconds.size(), timing.warmup, timing.min_ms(),
             tflops(flops, timing));
}

std::string scope_text(const Problem& problem, const CheckResult& check) {
  if (check.complete) return "all sequences and heads";
  if (check.heads_q == problem.heads_q) {
    const std::string sequences =
        check.batches == 1 ? "sequence 0" : fmt::format("sequences 0-{}", check.batches - 1);
    return fmt::format("{} of {}, all heads", sequences, problem.batch);
  }
  return fmt::format("sequence 0 of {}, heads 0-{} of {}", problem.batch, check.heads_q - 1,
                     problem.heads_q);
}

nlohmann::json timing_json(const Timing& timing, double flops) {
  return {{"median_ms", timing.median_ms()},
          {"min_ms", timing.min_ms()},
          {"runs_ms", timing.milliseconds},
          {"warmup", timing.warmup},
          {"flops", flops},
          {"tflops", tflops(flops, timing)}};
}

nlohmann::json problem_json(const Problem& problem) {
  nlohmann::json json{{"batch", problem.batch},
                      {"heads_q", problem.heads_q},
                      {"heads_kv", problem.heads_kv},
                      {"seqlen_q", problem.seqlen_q},
                      {"seqlen_k", problem.seqlen_k},
                      {"head_dim", problem.head_dim},
                      {"head_dim_v", problem.head_dim_v},
                      {"dtype", to_string(problem.dtype)},
                      {"causal", problem.causal},
                      {"window_left", problem.window_left},
                      {"window_right", problem.window_right},
                      {"softcap", problem.softcap},
                      {"alibi", problem.alibi},
                      {"dropout_p", problem.dropout_p},
                      {"seed", problem.seed},
                      {"offset", problem.offset},
                      {"deterministic", problem.deterministic}};
  json["softmax_scale"] = std::isnan(problem.softmax_scale) ? nlohmann::json(nullptr)
                                                            : nlohmann::json(problem.softmax_scale);
  if (problem.varlen()) {
    nlohmann::json sequences = nlohmann::json::array();
    for (const SequenceLengths& lengths : problem.sequences) {
      sequences.push_back({lengths.q, lengths.k});
    }
    json["varlen"] = sequences;
  }
  return json;
}

// JSON has no infinity; a +inf LSE error (a row that should see no key) is written as null.
nlohmann::json number_json(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

nlohmann::json check_json(const Problem& problem, const CheckResult& check) {
  nlohmann::json entries = nlohmann::json::array();
  for (const CheckEntry& entry : check.entries) {
    const reference::Comparison& c = entry.comparison;
    entries.push_back({{"name", entry.name},
                       {"max_error", number_json(c.max_error)},
                       {"lowp_error", number_json(c.lowp_error)},
                       {"tolerance", number_json(c.tolerance)},
                       {"worst_index", c.worst_index},
                       {"nan_count", c.nan_count},
                       {"passed", c.passed}});
  }
  return {{"passed", check.passed()},
          {"complete", check.complete},
          {"scope", scope_text(problem, check)},
          {"batches", check.batches},
          {"heads_q", check.heads_q},
          {"seconds", check.seconds},
          {"reproducible",
           check.reproducible ? nlohmann::json(*check.reproducible) : nlohmann::json(nullptr)},
          {"entries", entries}};
}

}  // namespace

void print_report(const Problem& problem, const RunResults& results) {
  fmt::print("flashattn {}  backend {} ({})\n", version(), to_string(results.forward_backend),
             device_text(problem));
  fmt::print("problem   {}, {}, {}\n", shape_text(problem), to_string(problem.dtype),
             options_text(problem));
  print_timing("forward", results.forward, results.flops.forward);
  if (results.backward) {
    if (results.backward_backend != results.forward_backend) {
      fmt::print("          backward runs on backend {}\n", to_string(results.backward_backend));
    }
    print_timing("backward", *results.backward, results.flops.backward);
  }
  if (!results.backward_skipped.empty()) {
    fmt::print("backward  skipped (unsupported): {}\n", results.backward_skipped);
  }
  fmt::print("flops     {}\n",
             results.flops.fa2_convention
                 ? "FA2 convention: fwd 4*b*h*sq*sk*d (half for causal), bwd 2.5x fwd"
                 : "visible (query, key) pairs of the window counted exactly; bwd 2.5x fwd");
  if (!results.check) return;
  const CheckResult& check = *results.check;
  fmt::print("check     against the fp64 reference: {}{} ({:.1f} s)\n", scope_text(problem, check),
             check.complete ? "" : " (a subset: the naive reference is O(seqlen^2) per head)",
             check.seconds);
  for (const CheckEntry& entry : check.entries) {
    const reference::Comparison& c = entry.comparison;
    fmt::print("  {:<4} max error {:.3e}  tolerance {:.3e}  {}{}\n", entry.name, c.max_error,
               c.tolerance, c.passed ? "PASS" : "FAIL",
               c.nan_count > 0 ? fmt::format(" ({} NaN)", c.nan_count) : "");
    if (!c.passed) fmt::print("       {}\n", c.describe());
  }
  if (check.reproducible) {
    fmt::print("  dq, dk, dv bitwise equal in a second backward (--deterministic)  {}\n",
               *check.reproducible ? "PASS" : "FAIL");
  }
  fmt::print("check     {}\n", check.passed() ? "PASS" : "FAIL");
}

void write_json(const Problem& problem, const RunResults& results, const std::string& path) {
  nlohmann::json json{{"version", version()},
                      {"device", to_string(problem.device)},
                      {"backend", to_string(results.forward_backend)},
                      {"problem", problem_json(problem)},
                      {"flops_convention", results.flops.fa2_convention ? "fa2" : "exact_window"},
                      {"forward", timing_json(results.forward, results.flops.forward)}};
  if (problem.device == Device::cpu) json["threads"] = problem.cpu_threads();
  if (results.backward) {
    json["backward"] = timing_json(*results.backward, results.flops.backward);
    json["backward"]["backend"] = to_string(results.backward_backend);
  }
  if (!results.backward_skipped.empty()) json["backward"] = {{"skipped", results.backward_skipped}};
  if (results.check) json["check"] = check_json(problem, *results.check);
  const std::string text = json.dump(2) + "\n";
  if (path == "-") {
    std::cout << text;
    return;
  }
  std::ofstream file(path);
  file << text;
  if (!file) throw std::runtime_error("--json: cannot write " + path);
}

}  // namespace flashattn::cli
