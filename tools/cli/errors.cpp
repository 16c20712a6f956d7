// Library errors -> a message on stderr that names the flag, and the CLI's exit code.
#include "errors.h"

#include <fmt/core.h>

#include <cctype>
#include <map>
#include <string>

namespace flashattn::cli {
namespace {

// Library messages start with the params field they are about ("k: heads 6 does not ...").
std::string flag_for_message(const std::string& message) {
  static const std::map<std::string, std::string> flags{{"batch", "--batch"},
                                                        {"heads_q", "--heads"},
                                                        {"heads_kv", "--heads-kv"},
                                                        {"seqlen_q", "--seqlen-q"},
                                                        {"seqlen_k", "--seqlen-k"},
                                                        {"head_dim", "--head-dim"},
                                                        {"head_dim_v", "--head-dim-v"},
                                                        {"dtype", "--dtype"},
                                                        {"q", "--heads/--head-dim"},
                                                        {"k", "--heads-kv/--head-dim"},
                                                        {"v", "--heads-kv/--head-dim-v"},
                                                        {"softmax_scale", "--scale"},
                                                        {"causal", "--causal"},
                                                        {"window_left", "--window-left"},
                                                        {"window_right", "--window-right"},
                                                        {"softcap", "--softcap"},
                                                        {"alibi_slopes", "--alibi"},
                                                        {"dropout_p", "--dropout"},
                                                        {"dropout_seed", "--seed"},
                                                        {"dropout_offset", "--offset"},
                                                        {"cu_seqlens_q", "--varlen"},
                                                        {"cu_seqlens_k", "--varlen"},
                                                        {"total_q", "--varlen"},
                                                        {"total_k", "--varlen"},
                                                        {"num_threads", "--threads"},
                                                        {"device", "--device"},
                                                        {"backend", "--backend"},
                                                        {"deterministic", "--deterministic"}};
  size_t end = 0;
  while (end < message.size() &&
         (std::isalnum(static_cast<unsigned char>(message[end])) || message[end] == '_')) {
    ++end;
  }
  const auto found = flags.find(message.substr(0, end));
  return found == flags.end() ? std::string() : found->second;
}

}  // namespace

int report_error(const char* stage, const Status& status) {
  const std::string flag = flag_for_message(status.message());
  fmt::print(stderr, "flashattn: {} failed ({}): {}{}\n", stage, to_string(status.code()),
             status.message(), flag.empty() ? "" : " [set by " + flag + "]");
  const bool bad_argument =
      status.code() == StatusCode::invalid_argument || status.code() == StatusCode::unsupported;
  return bad_argument ? kExitBadArgument : kExitRuntimeError;
}

}  // namespace flashattn::cli
