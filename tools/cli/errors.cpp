// Library errors -> a message on stderr that names the flag, and the CLI's exit code.
#include "errors.h"

#include <fmt/core.h>

#include <cctype>
#include <map>
#include <string>

namespace flashattn::cli {
namespace {

// The identifier that starts `text` at `start` (letters, digits, '_').
std::string identifier_at(const std::string& text, size_t start) {
  size_t end = start;
  while (end < text.size() &&
         (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
    ++end;
  }
  return text.substr(start, end - start);
}

// Library messages start with the params field they are about and, for an operand, the
// size at fault ("k: heads 6 does not divide q heads 32").
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
                                                        {"q heads", "--heads"},
                                                        {"k heads", "--heads-kv"},
                                                        {"v heads", "--heads-kv"},
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
  const std::string field = identifier_at(message, 0);
  const size_t detail = message.find_first_not_of(": ", field.size());
  const std::string detail_word = detail == std::string::npos ? "" : identifier_at(message, detail);
  for (const std::string& key : {field + " " + detail_word, field}) {
    if (const auto found = flags.find(key); found != flags.end()) return found->second;
  }
  return {};
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
