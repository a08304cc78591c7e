#pragma once
// What the fleet benches share (fleet_bench, rollout_bench): N hollow agents of this build started
// against a FleetBroker's listener for the nodes, a batch at a time, with progress on stdout.

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "support/hollow_fleet.h"

namespace outpost::bench {

struct BenchFleet {
  std::string outpostd;      // the binary
  std::string startLatency;  // the hollow runtime's, e.g. "200ms"
  std::string reconnectCap;  // cloud.reconnect.cap, e.g. "60s"
  size_t nodes = 0;
  size_t batch = 50;
  std::chrono::seconds deadline{600};  // for each batch to answer
};

// Starts the fleet in `dir` (agents reconnect from 1 s to the cap); throws what HollowFleet::start
// throws when agents do not come up.
inline std::unique_ptr<test::HollowFleet> startBenchFleet(const std::filesystem::path& dir,
                                                          const test::FleetBroker& broker,
                                                          const BenchFleet& b) {
  test::FleetOptions o;
  o.outpostd = b.outpostd;
  o.broker = broker.nodesUri();
  o.endpoint = "hollow://?start_latency=" + b.startLatency;
  o.reconnectBase = "1s";
  o.reconnectCap = b.reconnectCap;
  auto fleet = std::make_unique<test::HollowFleet>(dir, o);
  auto t0 = std::chrono::steady_clock::now();
  fleet->start(
      b.nodes, b.batch,
      [&](size_t n) {
        std::cout << "  started " << n << "/" << b.nodes << " agents ("
                  << std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - t0)
                         .count()
                  << " s)" << std::endl;
      },
      b.deadline);
  return fleet;
}

}  // namespace outpost::bench
