#pragma once
// Helpers shared by the fuzz harnesses (fuzz/*_fuzz.cc).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::fuzz {

// A property the harness checks does not hold: print why and abort, so libFuzzer keeps the input
// (it reports a "deadly signal" with this message above it).
[[noreturn]] inline void fail(std::string_view what) {
  std::fprintf(stderr, "\n*** fuzz property violated: %.*s\n", static_cast<int>(what.size()),
               what.data());
  std::fflush(stderr);
  std::abort();
}

inline void check(bool ok, std::string_view what) {
  if (!ok) fail(what);
}

inline std::string_view asText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits `text` at every `sep` (at most `maxParts` parts; the last takes the rest).
inline std::vector<std::string_view> split(std::string_view text, std::string_view sep,
                                           size_t maxParts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < maxParts) {
    size_t at = text.find(sep);
    if (at == std::string_view::npos) break;
    parts.push_back(text.substr(0, at));
    text.remove_prefix(at + sep.size());
  }
  parts.push_back(text);
  return parts;
}

}  // namespace outpost::fuzz
