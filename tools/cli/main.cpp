// flashattn: runs, times and checks one attention problem from the command line.
#include <fmt/core.h>

#include <exception>
#include <functional>

#include "attention_params.h"
#include "check.h"
#include "errors.h"
#include "flashattn/flashattn.h"
#include "flops.h"
#include "options.h"
#include "report.h"
#include "tensors.h"
#include "timing.h"

namespace flashattn::cli {
namespace {

int run(const Problem& problem) {
  RunResults results;
  results.flops = count_flops(problem);
  Tensors tensors = make_tensors(problem);

  const ForwardParams forward_args = forward_params(problem, tensors);
  if (Status s = select_backend(forward_args, &results.forward_backend); !s.ok()) {
    return report_error("forward", s);
  }
  if (Status s = time_runs(
          problem.device, problem.warmup, problem.iters, [&] { return forward(forward_args); },
          &results.forward);
      !s.ok()) {
    return report_error("forward", s);
  }

  if (problem.run_backward) {
    // A backend may run the forward but not yet the backward: report the forward and say why
    // the backward was skipped rather than fail the whole run.
    const BackwardParams backward_args = backward_params(problem, tensors);
    Timing timing;
    Status s = select_backend(backward_args, &results.backward_backend);
    if (s.ok()) {
      s = time_runs(
          problem.device, problem.warmup, problem.iters, [&] { return backward(backward_args); },
          &timing);
    }
    if (s.ok()) {
      results.backward = timing;
    } else if (s.code() == StatusCode::unsupported) {
      results.backward_skipped = s.message();
    } else {
      return report_error("backward", s);
    }
  }

  if (problem.check) {
    results.check.emplace();
    if (problem.deterministic && results.backward) {
      const BackwardParams backward_args = backward_params(problem, tensors);
      if (Status s = check_reproducible(
              tensors, [&] { return backward(backward_args); }, &*results.check);
          !s.ok()) {
        return report_error("backward", s);
      }
    }
    Problem checked = problem;
    checked.run_backward = results.backward.has_value();
    if (Status s = check_against_reference(checked, to_host(tensors), &*results.check); !s.ok()) {
      return report_error("check (reference)", s);
    }
  }

  if (problem.json_path != "-") print_report(problem, results);
  if (!problem.json_path.empty()) write_json(problem, results, problem.json_path);
  return results.check && !results.check->passed() ? kExitCheckFailed : 0;
}

}  // namespace
}  // namespace flashattn::cli

int main(int argc, char** argv) {
  flashattn::cli::Problem problem;
  if (auto exit_code = flashattn::cli::parse_options(argc, argv, &problem)) return *exit_code;
  try {
    return flashattn::cli::run(problem);
  } catch (const std::exception& error) {
    fmt::print(stderr, "flashattn: {}\n", error.what());
    return flashattn::cli::kExitRuntimeError;
  }
}
