// outpostd's configuration loader (agent/src/config.cc, loadConfig) from a YAML text, with
// environment overrides: the input is the YAML, optionally followed by a line "#env" and lines
// NAME=value, the environment the loader sees (OUTPOST_CLOUD_HEARTBEAT=5s, ...). Checked: loading
// never throws or crashes, and a configuration it accepts keeps validate()'s promises.

#include <chrono>

#include "fuzz_util.h"
#include "outpost/agent/config.h"

namespace {

using outpost::fuzz::check;
namespace agent = outpost::agent;

void checkAccepted(const agent::Config& c) {
  check(!c.node.name.empty(), "accepted without node.name");
  check(!c.node.stateDir.empty() && c.node.stateDir[0] == '/', "accepted a relative state_dir");
  check(c.cloud.transport == "mqtt" || c.cloud.transport == "websocket",
        "accepted an unknown transport");
  check(c.cloud.heartbeat > agent::Seconds::zero(), "accepted a heartbeat <= 0");
  check(c.cloud.rateLimitQps > 0 && c.cloud.rateLimitBurst >= 1, "accepted a rate limit <= 0");
  check(c.cloud.reconnectBase > agent::Seconds::zero() &&
            c.cloud.reconnectCap >= c.cloud.reconnectBase,
        "accepted reconnect.cap < reconnect.base");
  check(c.store.outboxMaxRows >= 1 && c.store.outboxMaxBytes >= 4096, "accepted a tiny outbox");
  check(c.store.commitWindow >= agent::Seconds::zero() &&
            c.store.commitWindow <= std::chrono::seconds(1),
        "accepted a commit window outside [0, 1s]");
  check(c.runtime.requestTimeout > agent::Seconds::zero() &&
            c.runtime.resyncInterval > agent::Seconds::zero() &&
            c.runtime.nodeStatusInterval > agent::Seconds::zero(),
        "accepted a runtime interval <= 0");
  check(!c.api.socket.empty() && c.api.socket[0] == '/' && c.api.socket.size() <= 100,
        "accepted a bad api.socket");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = outpost::fuzz::split(outpost::fuzz::asText(data, size), "\n#env\n", 2);
  agent::Environment env;
  if (parts.size() > 1) {
    for (auto line : outpost::fuzz::split(parts[1], "\n", 64)) {
      auto eq = line.find('=');
      if (eq == std::string_view::npos) continue;
      env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
  }
  auto result = agent::loadConfig(std::string(parts[0]), env);
  (void)result.errors.toString();
  if (result.ok()) checkAccepted(result.config);
  return 0;
}
