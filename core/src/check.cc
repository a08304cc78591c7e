#include "outpost/core/check.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "outpost/core/log.h"

namespace outpost::core::detail {

void checkFailed(const char* file, int line, const char* condition, const std::string& message) {
  // Under systemd stderr is the journal: a "<2>" prefix files the line at priority critical, as
  // the logger does for its own critical lines.
  std::string text = std::getenv("JOURNAL_STREAM") != nullptr ? "<2>" : "";
  text += "check failed at ";
  text += file;
  text += ':';
  text += std::to_string(line);
  text += ": ";
  text += escapeControl(condition);
  if (!message.empty()) {
    text += ": ";
    text += escapeControl(message);
  }
  text += '\n';
  // Straight to the file descriptor, not through a buffered stream: the line is out before the
  // abort, in one piece unless stderr is a pipe that is full.
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
  std::abort();
}

}  // namespace outpost::core::detail
