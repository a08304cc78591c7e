// kubelet's /metrics/resource text (stream/src/resource_metrics.cc), read back by a small
// Prometheus text parser here; the node's figures from a /proc of the test's making; and
// RuntimeStreams over deploy (agent/src/runtime_streams.cc) against the real containerd: what
// `kubectl top`, `logs` and `exec` would reach on this node, and what they cannot.

#include "outpost/stream/resource_metrics.h"

#include <doctest/doctest.h>

#include <map>
#include <sstream>

#include "cri_fixture.h"
#include "runtime_streams.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

// A parsed exposition: samples by "name{labels}", each family's TYPE, and what was wrong.
struct Exposition {
  struct Sample {
    double value = 0;
    int64_t timestampMs = 0;
  };
  std::map<std::string, Sample> samples;
  std::map<std::string, std::string> types;
  std::vector<std::string> errors;
};

// Prometheus' text format 0.0.4, as strictly as metrics-server needs: HELP and TYPE before a
// family's samples, `name{l="v",...} value [timestamp]`, labels sorted, every line ended.
Exposition parse(const std::string& text) {
  Exposition e;
  if (text.empty() || text.back() != '\n') e.errors.push_back("the text does not end a line");
  std::istringstream in(text);
  std::string line;
  std::string family;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      if (name != family) e.errors.push_back("TYPE without its HELP: " + line);
      if (type != "counter" && type != "gauge") e.errors.push_back("bad type: " + line);
      e.types[name] = type;
      continue;
    }
    size_t brace = line.find('{');
    size_t space = brace == std::string::npos ? line.find(' ') : line.find("} ") + 1;
    std::string series = line.substr(0, space);
    std::string name = series.substr(0, series.find('{'));
    if (name != family || !e.types.count(name)) e.errors.push_back("sample out of family: " + line);
    if (brace != std::string::npos) {
      std::string labels = series.substr(brace + 1, series.size() - brace - 2);
      std::string previous;
      std::istringstream ls(labels);
      std::string pair;
      while (std::getline(ls, pair, ',')) {
        std::string key = pair.substr(0, pair.find('='));
        if (key <= previous) e.errors.push_back("labels not sorted: " + line);
        if (pair.find("=\"") == std::string::npos || pair.back() != '"')
          e.errors.push_back("bad label: " + line);
        previous = key;
      }
    }
    std::istringstream rest(line.substr(space));
    Exposition::Sample s;
    if (!(rest >> s.value)) e.errors.push_back("bad value: " + line);
    rest >> s.timestampMs;
    e.samples[series] = s;
  }
  return e;
}

TEST_CASE("resource metrics: a known snapshot reads back as metrics-server would read it") {
  stream::ResourceSnapshot snap;
  snap.node = {1700000000123, 2'500'000'000'000ULL, 1700000000124, 1'073'741'824ULL};
  stream::PodUsage web{
      "default", "web", {1700000000200, 3'000'000'000ULL, 1700000000201, 7340032}, {}};
  web.containers.push_back(
      {"app", 1699999990000, {1700000000200, 1'500'000'000ULL, 1700000000201, 5242880}});
  web.containers.push_back({"sidecar", 1699999990500, {0, std::nullopt, 0, std::nullopt}});
  snap.pods.push_back(web);
  snap.pods.push_back({"edge", "odd\"name", {1, 10, 1, 20}, {}});
  auto e = parse(stream::resourceMetricsText(snap));
  for (const auto& err : e.errors) FAIL_CHECK(err);
  CHECK(e.types["node_cpu_usage_seconds_total"] == "counter");
  CHECK(e.types["node_memory_working_set_bytes"] == "gauge");
  CHECK(e.types["container_cpu_usage_seconds_total"] == "counter");
  CHECK(e.types["pod_memory_working_set_bytes"] == "gauge");
  CHECK(e.samples["node_cpu_usage_seconds_total"].value == doctest::Approx(2500.0));
  CHECK(e.samples["node_cpu_usage_seconds_total"].timestampMs == 1700000000123);
  CHECK(e.samples["node_memory_working_set_bytes"].value == 1073741824.0);
  const std::string app = R"({container="app",namespace="default",pod="web"})";
  CHECK(e.samples["container_cpu_usage_seconds_total" + app].value == doctest::Approx(1.5));
  CHECK(e.samples["container_cpu_usage_seconds_total" + app].timestampMs == 1700000000200);
  CHECK(e.samples["container_memory_working_set_bytes" + app].value == 5242880.0);
  CHECK(e.samples["container_memory_working_set_bytes" + app].timestampMs == 1700000000201);
  CHECK(e.samples["container_start_time_seconds" + app].value == doctest::Approx(1699999990.0));
  CHECK(e.samples["container_start_time_seconds" + app].timestampMs == 0);
  // A figure the runtime did not give is left out, not reported as 0.
  const std::string sidecar = R"({container="sidecar",namespace="default",pod="web"})";
  CHECK(e.samples.count("container_cpu_usage_seconds_total" + sidecar) == 0);
  CHECK(e.samples.count("container_memory_working_set_bytes" + sidecar) == 0);
  CHECK(e.samples.count("container_start_time_seconds" + sidecar) == 1);
  CHECK(e.samples[R"(pod_cpu_usage_seconds_total{namespace="default",pod="web"})"].value ==
        doctest::Approx(3.0));
  CHECK(e.samples[R"(pod_memory_working_set_bytes{namespace="default",pod="web"})"].value ==
        7340032.0);
  CHECK(e.samples.count(R"(pod_memory_working_set_bytes{namespace="edge",pod="odd\"name"})") == 1);
  CHECK(e.samples["scrape_error"].value == 0);
  CHECK(e.samples["resource_scrape_error"].value == 0);
  snap.scrapeError = true;
  CHECK(parse(stream::resourceMetricsText(snap)).samples["scrape_error"].value == 1);
}

TEST_CASE("the node's CPU time and working set come from /proc/stat and /proc/meminfo") {
  TempDir proc;
  writeFile(proc / "stat",
            "cpu  100 20 30 5000 40 6 7 8 9 0\ncpu0 50 10 15 2500 20 3 3 4 4 0\nintr 1 2 3\n");
  writeFile(proc / "meminfo",
            "MemTotal:        1000000 kB\nMemFree:          400000 kB\nMemAvailable:     "
            "700000 kB\nInactive(file):   100000 kB\n");
  auto u = stream::readNodeUsage(proc.path(), 42);
  REQUIRE(u.isOk());
  long hz = ::sysconf(_SC_CLK_TCK);
  // user + nice + system + irq + softirq + steal, not idle or iowait
  CHECK(*u->cpuCoreNanos == (100 + 20 + 30 + 6 + 7 + 8) * (1000000000ULL / hz));
  CHECK(*u->memoryWorkingSetBytes == (1000000ULL - 400000 - 100000) * 1024);
  CHECK(u->cpuTimeMs == 42);
  writeFile(proc / "meminfo", "MemTotal: 1 kB\n");
  auto bad = stream::readNodeUsage(proc.path(), 42);
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().message().find("meminfo") != std::string::npos);
  auto real = stream::readNodeUsage("/proc", 1);
  REQUIRE(real.isOk());
  CHECK(*real->cpuCoreNanos > 0);
  CHECK(*real->memoryWorkingSetBytes > 0);
}

TEST_CASE(
    "runtime streams over deploy: top shows a running container's memory, logs and exec "
    "reach only this node's pods") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/top";
  f.desired.put(key, busyboxPod("top", "uid-top", ContainerdHarness::kBusybox,
                                {{"app", "echo started; " + std::string(kLoop)}})
                         .dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"app"}); }, 30s));
  deploy::Reconciler& rec = agent->reconciler();
  agent::DeployRuntimeStreams streams(
      [&](const std::function<core::Status(deploy::Runtime&, const deploy::Reconciler&)>& fn) {
        return fn(*f.runtime, rec);
      },
      f.clock);

  auto text = streams.resourceMetrics();
  REQUIRE(text.isOk());
  auto e = parse(*text);
  for (const auto& err : e.errors) FAIL_CHECK(err);
  const std::string app = R"({container="app",namespace="default",pod="top"})";
  MESSAGE(*text);
  CHECK(e.samples["container_memory_working_set_bytes" + app].value > 0);
  CHECK(e.samples.count("container_cpu_usage_seconds_total" + app) == 1);
  CHECK(e.samples["container_start_time_seconds" + app].value > 1.6e9);
  CHECK(e.samples[R"(pod_memory_working_set_bytes{namespace="default",pod="top"})"].value > 0);
  CHECK(e.samples["node_memory_working_set_bytes"].value > 0);
  CHECK(e.samples["scrape_error"].value == 0);

  auto log = streams.containerLog({"default", "top", "app"}, false);
  REQUIRE_MESSAGE(log.isOk(), log.status().toString());
  CHECK(waitFor([&] { return readFile(log->path).find("started") != std::string::npos; }));
  CHECK(log->containerId == f.containers("uid-top", true).at(0).id);
  CHECK(streams.containerLog({"default", "top", "app"}, true).status().code() ==
        core::Code::kNotFound);
  CHECK(streams.containerLog({"default", "top", "nope"}, false).status().code() ==
        core::Code::kNotFound);
  CHECK(streams.containerLog({"default", "elsewhere", "app"}, false).status().code() ==
        core::Code::kNotFound);
  CHECK(streams.containerLog({"kube-system", "top", "app"}, false).status().code() ==
        core::Code::kNotFound);
  CHECK(streams.containerLog({"default", "../top", "app"}, false).status().code() ==
        core::Code::kInvalidArgument);
  CHECK(streams.execUrl({{"default", "elsewhere", "app"}, {"sh"}}).status().code() ==
        core::Code::kNotFound);
  CHECK(streams.execUrl({{"default", "top", "app"}, {}}).status().code() ==
        core::Code::kInvalidArgument);
  auto url = streams.execUrl({{"default", "top", "app"}, {"echo", "hi"}});
  REQUIRE_MESSAGE(url.isOk(), url.status().toString());
  CHECK(url->rfind("http://127.0.0.1:", 0) == 0);
  auto attach = streams.attachUrl({{"default", "top", "app"}, false, true, true, false});
  REQUIRE_MESSAGE(attach.isOk(), attach.status().toString());
  CHECK(attach->find("/attach/") != std::string::npos);
}

TEST_CASE(
    "top from a runtime without ListPodSandboxStats: a pod is the sum of its containers; a "
    "failed stats call is scrape_error 1, the node's figures stay") {
  FakeRuntime rt;
  rt.addImage("img:1");
  MemoryDesired desired;
  MemorySink sink;
  TempDir state;
  core::ManualClock clock;
  deploy::ReconcilerConfig cfg;
  cfg.stateDir = state.path().string();
  desired.put("default/pod/two",
              busyboxPod("two", "uid-two", "img:1", {{"a", "run"}, {"b", "run"}}).dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  REQUIRE(sink.state("default/pod/two", "b") == "running");
  agent::DeployRuntimeStreams streams(
      [&](const std::function<core::Status(deploy::Runtime&, const deploy::Reconciler&)>& fn) {
        return fn(rt, agent.reconciler());
      },
      clock);
  rt.failCall("ListPodSandboxStats",
              core::Status(core::Code::kUnimplemented, "ListPodSandboxStats: not implemented"));
  auto e = parse(*streams.resourceMetrics());
  for (const auto& err : e.errors) FAIL_CHECK(err);
  // The fake's running containers use 1 MiB each.
  CHECK(e.samples
            [R"(container_memory_working_set_bytes{container="a",namespace="default",pod="two"})"]
                .value == 1048576.0);
  CHECK(e.samples[R"(pod_memory_working_set_bytes{namespace="default",pod="two"})"].value ==
        2097152.0);
  CHECK(e.samples["scrape_error"].value == 0);
  rt.failCall("ListContainerStats", core::unavailable("ListContainerStats: runtime busy"));
  e = parse(*streams.resourceMetrics());
  CHECK(e.samples["scrape_error"].value == 1);
  CHECK(e.samples.count(R"(pod_memory_working_set_bytes{namespace="default",pod="two"})") == 0);
  CHECK(e.samples["node_memory_working_set_bytes"].value > 0);
}

}  // namespace
}  // namespace outpost::test
