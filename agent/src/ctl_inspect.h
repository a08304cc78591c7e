#pragma once
// outpostctl's read-only commands beyond `get`: describe, logs, get twins. They ask the agent over
// its control socket (docs/local-api.md) and, for logs, read the CRI log files it names.

#include <nlohmann/json.hpp>
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

// How deep an answer of the agent may nest: a stored object (at most 100 levels, as the agent lets
// through) inside the answer's list and item. Anything deeper is refused before it is parsed: an
// object that an older agent stored 70 000 levels deep crashed the YAML printer and made the JSON
// one print gigabytes.
inline constexpr size_t kMaxAnswerDepth = 110;
// An answer of the agent parsed after that check; discarded (is_discarded()) when it is refused or
// is not JSON, `why` then saying which.
nlohmann::json parseAnswer(const std::string& body, std::string* why = nullptr);
// Calls the agent's API (`method` `target`, with `body`) and parses its answer into `out`. Returns
// an exit code, the error already printed: unreachable 69, an answer of 404 its own code, 400 a
// usage error, another status or an answer that is not JSON a failure.
int callAgent(const std::string& socket, const std::string& method, const std::string& target,
              const std::string& body, nlohmann::json& out);
// `s` escaped for a URL's query.
std::string urlEncode(const std::string& s);
// The one desired object of `type` named `name` in the options' namespace, as /v1/resources lists
// it, into `item`. Returns an exit code, the error already printed (not found: kExitNotFound).
int fetchObject(const InspectOptions& o, const std::string& type, const std::string& name,
                nlohmann::json& item);
// For an item of /v1/resources that the agent could not show (its "error"): prints it and returns
// true.
bool reportUnshown(const nlohmann::json& item);

// `describe TYPE NAME`: pods, configmaps, secrets (values hidden), devices, twins.
int cmdDescribe(const InspectOptions& o);
// `logs POD [-c CONTAINER] [-f] [--tail N]` (ctl_logs.cc).
int cmdLogs(const InspectOptions& o);
// `get twins [DEVICE]`.
int cmdGetTwins(const InspectOptions& o);

}  // namespace outpost::agent
