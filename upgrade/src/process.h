#pragma once
// Running a program by absolute path with an argument vector (fork, execv: no shell, no PATH
// lookup), waiting for it; its output to a log file or discarded.

#include <filesystem>
#include <string>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::upgrade {

struct ProgramResult {
  int exitCode = -1;   // 128 + signal when killed
  std::string output;  // stdout, when captured
};

// `log`: where stdout and stderr go (appended); empty: stdout captured into output, stderr dropped.
core::Result<ProgramResult> runProgram(const std::vector<std::string>& argv,
                                       const std::filesystem::path& log = {});

}  // namespace outpost::upgrade
