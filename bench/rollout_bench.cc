// Rollout benchmark (R1 of docs/benchmarks.md, "Rollout"): N hollow outpostd processes (this
// build's) in one group against one mosquitto; `outpostctl rollout start` (this build's) moves them
// from web:1 to web:2 with a canary of 1 and waves of 10 %, 50 % and 100 % at --rate nodes per
// minute. Reported: the time from start to Succeeded next to the strategy's own minimum (the switch
// spacing alone: (N - 1) / rate minutes), each wave's time, and the controller's CPU time.
//   outpost_bench_rollout [--nodes 1000] [--rate 500] [--batch 50] [--out file.json]

#include <sys/resource.h>
#include <sys/wait.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "bench_flags.h"
#include "bench_fleet.h"
#include "bench_util.h"
#include "support/hollow_fleet.h"
#include "support/test_util.h"

using namespace std::chrono_literals;
using nlohmann::json;
using outpost::test::FleetBroker;
using outpost::test::FleetClock;
using outpost::test::FleetObserver;
using outpost::test::HollowFleet;
using outpost::test::waitFor;

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "rollout bench: " << what << "\n";
  std::exit(1);
}

double since(FleetClock::time_point t0) {
  return std::chrono::duration<double>(FleetClock::now() - t0).count();
}

// Nodes whose status of the pod reports version `rv` healthy.
size_t healthy(const FleetObserver& obs, const HollowFleet& fleet, const std::string& rv) {
  size_t n = 0;
  for (size_t i = 0; i < fleet.size(); ++i) {
    json st = obs.status(fleet.name(i), "default/pod/web");
    n += st.is_object() && st.contains("outpost") && st["outpost"].is_object() &&
                 st["outpost"].value("desiredVersion", "") == rv &&
                 st["outpost"].value("health", "") == "healthy"
             ? 1
             : 0;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  size_t nodes = 1000, batch = 50;
  int rate = 500;
  std::string out, outpostd = OUTPOST_BENCH_OUTPOSTD, outpostctl = OUTPOST_BENCH_OUTPOSTCTL;
  CLI::App app{"Rollout benchmark (R1): outpostctl rollout over N hollow agents",
               "outpost_bench_rollout"};
  app.option_defaults()->always_capture_default();
  app.add_option("--nodes", nodes, "agents (real outpostd processes)")
      ->check(outpost::bench::atLeast(2));
  app.add_option("--rate", rate, "the strategy's maxNodesPerMinute")
      ->check(outpost::bench::atLeast(1));
  app.add_option("--batch", batch, "agents started at a time")->check(outpost::bench::atLeast(1));
  app.add_option("--outpostd", outpostd, "the outpostd binary");
  app.add_option("--outpostctl", outpostctl, "the outpostctl binary");
  app.add_option("--out", out, "write the results as JSON to this file");
  outpost::bench::parseFlags(app, argc, argv);
  if (outpost::test::raiseFileLimit() < static_cast<long>(3 * nodes + 200))
    fail("the open-file limit is too low for " + std::to_string(nodes) + " nodes (ulimit -n)");

  outpost::test::TempDir dir;
  FleetBroker broker;
  FleetObserver obs(broker.cloudUri());
  auto t0 = FleetClock::now();
  std::unique_ptr<HollowFleet> started;
  try {
    started = outpost::bench::startBenchFleet(dir.path(), broker,
                                              {outpostd, "200ms", "30s", nodes, batch});
  } catch (const std::exception& e) {
    fail(e.what());
  }
  HollowFleet& fleet = *started;
  std::cout << nodes << " agents up in " << since(t0) << " s" << std::endl;
  if (!waitFor([&] { return obs.onlineCount() == nodes; }, 300s)) fail("not every node online");

  auto ctl = [&](std::vector<std::string> args, std::string* text) {
    std::vector<std::string> cmd = {outpostctl, "-c", fleet.config(0).string()};
    cmd.insert(cmd.end(), args.begin(), args.end());
    cmd.insert(cmd.end(), {"--broker", broker.cloudUri()});
    std::string err;
    int rc = outpost::test::run(cmd, text, &err, std::chrono::hours(2));
    if (rc != 0) fail(cmd[3] + " exited " + std::to_string(rc) + ": " + err + (text ? *text : ""));
  };
  outpost::test::writeFile(dir / "v1.yaml", outpost::test::podYaml("web", "web:1"));
  std::string text;
  ctl({"apply", "-f", (dir / "v1.yaml").string(), "--group", "fleet"}, &text);
  // The version apply printed is the group's: wait until every node runs it healthy.
  std::string v1;
  if (auto at = text.find("default/pod/web"); at != std::string::npos) {
    auto digits = text.find_first_of("0123456789", at + 15);
    v1 = text.substr(digits, text.find_first_not_of("0123456789", digits) - digits);
  }
  t0 = FleetClock::now();
  if (!waitFor([&] { return healthy(obs, fleet, v1) == nodes; }, 600s))
    fail("web:1 not healthy everywhere (" + std::to_string(healthy(obs, fleet, v1)) + ")");
  std::cout << "web:1 healthy on every node in " << since(t0) << " s" << std::endl;

  outpost::test::writeFile(
      dir / "v2.yaml",
      "apiVersion: outpost.io/v1\nkind: Rollout\nmetadata: {name: bench}\nspec:\n"
      "  target: {group: fleet}\n  strategy:\n    canary: 1\n    waves: [\"10%\", \"50%\", "
      "\"100%\"]\n    maxNodesPerMinute: " +
          std::to_string(rate) +
          "\n    nodeTimeoutSeconds: 600\n    prePullTimeoutSeconds: 600\n---\n" +
          outpost::test::podYaml("web", "web:2"));
  rusage before{}, after{};
  getrusage(RUSAGE_CHILDREN, &before);
  t0 = FleetClock::now();
  ctl({"rollout", "start", "-f", (dir / "v2.yaml").string()}, &text);
  double took = since(t0);
  getrusage(RUSAGE_CHILDREN, &after);
  auto cpu = [](const rusage& r) {
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  double minimum = static_cast<double>(nodes - 1) * 60.0 / rate;
  std::string status;
  ctl({"rollout", "status", "bench", "-o", "json"}, &status);
  json st = json::parse(status, nullptr, false);
  json waves = json::array();
  if (st.is_object()) {
    for (size_t w = 0; w < st["waves"].size(); ++w) {
      int64_t start = st["waves"][w].value("startedAt", int64_t{0});
      int64_t end = w + 1 < st["waves"].size() ? st["waves"][w + 1].value("startedAt", int64_t{0})
                                               : st.value("updatedAt", int64_t{0});
      waves.push_back({{"nodes", st["waves"][w].value("size", 0)},
                       {"seconds", static_cast<double>(end - start) / 1000.0}});
    }
  }
  json result = {
      {"machine",
       {{"cores", std::thread::hardware_concurrency()}, {"cpu", outpost::bench::cpuModel()}}},
      {"nodes", nodes},
      {"rate_per_minute", rate},
      {"phase", st.is_object() ? st.value("phase", "") : ""},
      {"seconds", took},
      {"minimum_seconds", minimum},
      {"over_minimum", took / minimum},
      {"controller_cpu_seconds", cpu(after) - cpu(before)},
      {"waves", waves}};
  std::cout << result.dump(2) << std::endl;
  if (!out.empty()) outpost::test::writeFile(out, result.dump(2) + "\n");
  fleet.stopAll(60s);
  return result["phase"] == "Succeeded" ? 0 : 1;
}
