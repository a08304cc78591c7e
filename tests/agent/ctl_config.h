// The configuration of node edge-7 that outpostctl's suites run outpostd with: no runtime, the
// device and cloud links on one broker, the local API on a socket in `dir`.
#pragma once

#include <string>

#include "support/mosquitto.h"
#include "support/test_util.h"

namespace outpost::test {

// Writes dir/outpost.yaml and returns its path.
inline std::string writeCtlConfig(const TempDir& dir, const Mosquitto& broker) {
  writeFile(dir / "outpost.yaml",
            "node: {name: edge-7, state_dir: " + (dir / "state").string() + "}\n" +
                "runtime: {enabled: false}\n" + "device: {broker: \"" + broker.uri() + "\"}\n" +
                "cloud: {mqtt: {broker: \"" + broker.uri() +
                "\"}, reconnect: {base: 100ms, cap: 1s}}\n" +
                "api: {socket: " + (dir / "o.sock").string() + ", metrics_address: \"\"}\n");
  return (dir / "outpost.yaml").string();
}

}  // namespace outpost::test
