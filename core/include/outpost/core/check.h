#pragma once
// OUTPOST_CHECK: an invariant that holds in every build type, release included. When it does not,
// the program is in a state nobody designed for: one line goes to stderr naming the file, line,
// condition and message, then std::abort(), and systemd restarts the agent from its store. Use it
// for programming errors only; bad input from outside gets a Status, never a check.
//   OUTPOST_CHECK(period > Duration::zero(), "runEvery needs a positive period");
// The message arguments are concatenated with operator<< and only evaluated when the check fails.

#include <sstream>
#include <string>

namespace outpost::core::detail {

// Writes the line (control characters escaped) to stderr in one write and aborts.
[[noreturn]] void checkFailed(const char* file, int line, const char* condition,
                              const std::string& message);

template <typename... Args>
[[noreturn]] void checkFailedWith(const char* file, int line, const char* condition,
                                  const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  checkFailed(file, line, condition, out.str());
}

}  // namespace outpost::core::detail

#define OUTPOST_CHECK(cond, ...)                                                  \
  do {                                                                            \
    if (!(cond)) [[unlikely]]                                                     \
      ::outpost::core::detail::checkFailedWith(__FILE__, __LINE__,                \
                                               #cond __VA_OPT__(, ) __VA_ARGS__); \
  } while (false)
