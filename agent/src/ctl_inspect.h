#pragma once
// outpostctl's read-only commands beyond `get`: describe, logs, get twins. They ask the agent over
// its control socket (docs/local-api.md) and, for logs, read the CRI log files it names.

#include <string>
#include <vector>

namespace outpost::agent {

struct InspectOptions {
  std::string socket;            // the agent's control socket
  std::string output = "table";  // table, json, yaml
  std::string ns = "default";
  std::vector<std::string> args;  // the command's positional arguments
  std::string container;          // logs -c
  bool follow = false;            // logs -f
  long tail = -1;                 // logs --tail (-1: everything)
};

// `describe TYPE NAME`: pods, configmaps, secrets (values hidden), devices, twins.
int cmdDescribe(const InspectOptions& o);
// `logs POD [-c CONTAINER] [-f] [--tail N]`.
int cmdLogs(const InspectOptions& o);
// `get twins [DEVICE]`.
int cmdGetTwins(const InspectOptions& o);

}  // namespace outpost::agent
