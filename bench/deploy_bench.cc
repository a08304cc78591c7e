// Deploy benchmark (B4, B5) against a real containerd that this program starts under a temporary
// directory (tests/support/containerd_harness), with host-network busybox pods.
//   B4: desired pod -> container running, through the reconciler, next to the same CRI calls made
//       directly (ImageStatus, RunPodSandbox, CreateContainer, StartContainer), for 1 and N pods.
//   B5: offline cold boot with N cached pods: (a) their containers still run: time to all
//       reported running, containers and sandboxes recreated (target 0); (b) every container is
//       gone (killed): time to all running again, next to the raw CRI calls from the same state.
// Needs root; cleans up everything it started (containerd, shims, cgroups, mounts).
//   outpost_bench_deploy [--out file.json] [--reps 5] [--pods 50]

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bench_flags.h"
#include "bench_util.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/deploy/cri_runtime.h"
#include "outpost/deploy/ports.h"
#include "outpost/deploy/reconciler.h"
#include "support/containerd_harness.h"
#include "support/test_util.h"

using namespace outpost;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using bench::cpuModel;
using bench::median;
using bench::summary;

struct Params {
  std::string out;
  int reps = 5;
  int pods = 50;
};

std::unique_ptr<test::ContainerdHarness> gHarness;  // torn down by main() on failure too

// A failure of the bench itself. die() throws it so that main() unwinds (the agents stop their
// loops, the CRI client closes) and then stops containerd with everything it started: std::exit
// skipped the unwinding.
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void die(const std::string& what) { throw BenchFailure(what); }

double ms(SteadyClock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// ---- the pods
// ------------------------------------------------------------------------------------

// `sleep` as PID 1 has no SIGTERM handler: sandboxes are stopped with SIGKILL at cleanup anyway.
json podJson(const std::string& name) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "bench"}, {"uid", "uid-" + name}}},
          {"spec",
           {{"hostNetwork", true},
            {"terminationGracePeriodSeconds", 0},
            {"containers",
             {{{"name", "c"},
               {"image", test::ContainerdHarness::kBusybox},
               {"imagePullPolicy", "IfNotPresent"},
               {"command", {"/bin/sleep", "3600"}}}}}}}};
}

std::vector<std::string> podNames(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + "-" + std::to_string(i));
  return out;
}

std::string keyOf(const std::string& name) { return "bench/pod/" + name; }

// ---- the agent's side: reconciler, in-memory ports
// ---------------------------------------------------------------

class Desired final : public deploy::DesiredPods {
 public:
  void put(const std::string& key, std::string json) {
    std::lock_guard<std::mutex> lock(mu_);
    objects_[key] = std::move(json);
  }
  std::vector<deploy::PodRecord> listPods() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<deploy::PodRecord> out;
    for (const auto& [k, v] : objects_) out.push_back({k, v});
    return out;
  }
  std::optional<std::string> getObject(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> objects_;
};

// Remembers when each pod was first reported Running; lets the bench wait for `n` of them.
class Sink final : public deploy::StatusSink {
 public:
  void podStatus(const std::string& key, const std::string& json) override {
    if (json.find("\"phase\":\"Running\"") == std::string::npos) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (running_.emplace(key, SteadyClock::now()).second) cv_.notify_all();
  }
  void podRemoved(const std::string&) override {}
  void nodeStatus(const std::string&) override {}
  // The time the n-th pod was reported running.
  SteadyClock::time_point waitRunning(size_t n, std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return running_.size() >= n; }))
      die("only " + std::to_string(running_.size()) + " of " + std::to_string(n) +
          " pods running in time");
    SteadyClock::time_point last{};
    for (const auto& [k, t] : running_) last = std::max(last, t);
    return last;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, SteadyClock::time_point> running_;
};

// One agent's deploy half: its loop and reconciler. Containers outlive it.
class Agent {
 public:
  Agent(deploy::Runtime& runtime, Desired& desired, Sink& sink, const deploy::ReconcilerConfig& cfg)
      : logging_(core::Logging::Options{core::LogLevel::kError, false, ""}),
        loop_("deploy-bench", clock_) {
    reconciler_ = std::make_unique<deploy::Reconciler>(loop_, runtime, desired, sink, cfg,
                                                       logging_.get("deploy"));
    loop_.start();
  }
  ~Agent() {
    reconciler_->stop();
    loop_.stop();
    reconciler_.reset();
  }
  // Starts (the cold boot pass) and waits for it.
  void start() {
    // Shared with the callback: after a timeout die() unwinds this frame while the pass may still
    // finish on the loop.
    struct Done {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
    };
    auto state = std::make_shared<Done>();
    reconciler_->start([state] {
      std::lock_guard<std::mutex> lock(state->mu);
      state->done = true;
      state->cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(state->mu);
    if (!state->cv.wait_for(lock, 300s, [&] { return state->done; }))
      die("cold boot pass did not finish");
  }
  deploy::Reconciler& reconciler() { return *reconciler_; }

 private:
  core::SystemClock clock_;
  core::Logging logging_;
  core::EventLoop loop_;
  std::unique_ptr<deploy::Reconciler> reconciler_;
};

// Forwards to the real runtime and adds up the time spent in each call, so the agent's own time
// (wall time minus time inside the runtime) is measured without the runtime's noise.
class TimingRuntime final : public deploy::Runtime {
 public:
  explicit TimingRuntime(deploy::Runtime& inner) : inner_(inner) {}
  struct Calls {
    int count = 0;
    double ms = 0;
  };
  std::map<std::string, Calls> take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(calls_, {});
  }

  core::Result<deploy::VersionInfo> version() override {
    return timed("Version", [&] { return inner_.version(); });
  }
  core::Result<std::string> runPodSandbox(const deploy::PodSandboxConfig& c,
                                          const std::string& h) override {
    return timed("RunPodSandbox", [&] { return inner_.runPodSandbox(c, h); });
  }
  core::Status stopPodSandbox(const std::string& id) override {
    return timed("StopPodSandbox", [&] { return inner_.stopPodSandbox(id); });
  }
  core::Status removePodSandbox(const std::string& id) override {
    return timed("RemovePodSandbox", [&] { return inner_.removePodSandbox(id); });
  }
  core::Result<deploy::PodSandboxStatus> podSandboxStatus(const std::string& id) override {
    return timed("PodSandboxStatus", [&] { return inner_.podSandboxStatus(id); });
  }
  core::Result<std::vector<deploy::PodSandbox>> listPodSandbox(
      const deploy::SandboxFilter& f) override {
    return timed("ListPodSandbox", [&] { return inner_.listPodSandbox(f); });
  }
  core::Result<std::string> createContainer(const std::string& s, const deploy::ContainerConfig& c,
                                            const deploy::PodSandboxConfig& sc) override {
    return timed("CreateContainer", [&] { return inner_.createContainer(s, c, sc); });
  }
  core::Status startContainer(const std::string& id) override {
    return timed("StartContainer", [&] { return inner_.startContainer(id); });
  }
  core::Status stopContainer(const std::string& id, std::chrono::seconds grace) override {
    return timed("StopContainer", [&] { return inner_.stopContainer(id, grace); });
  }
  core::Status removeContainer(const std::string& id) override {
    return timed("RemoveContainer", [&] { return inner_.removeContainer(id); });
  }
  core::Result<std::vector<deploy::Container>> listContainers(
      const deploy::ContainerFilter& f) override {
    return timed("ListContainers", [&] { return inner_.listContainers(f); });
  }
  core::Result<deploy::ContainerStatus> containerStatus(const std::string& id) override {
    return timed("ContainerStatus", [&] { return inner_.containerStatus(id); });
  }
  core::Result<deploy::ExecResult> execSync(const std::string& id,
                                            const std::vector<std::string>& cmd,
                                            std::chrono::seconds timeout) override {
    return timed("ExecSync", [&] { return inner_.execSync(id, cmd, timeout); });
  }
  core::Result<std::optional<deploy::ImageInfo>> imageStatus(const std::string& image) override {
    return timed("ImageStatus", [&] { return inner_.imageStatus(image); });
  }
  core::Result<std::string> exec(const deploy::StreamRequest& r) override {
    return timed("Exec", [&] { return inner_.exec(r); });
  }
  core::Result<std::string> attach(const deploy::StreamRequest& r) override {
    return timed("Attach", [&] { return inner_.attach(r); });
  }
  core::Result<std::vector<deploy::ContainerStats>> listContainerStats(
      const deploy::StatsFilter& f) override {
    return timed("ListContainerStats", [&] { return inner_.listContainerStats(f); });
  }
  core::Result<std::vector<deploy::PodSandboxStats>> listPodSandboxStats(
      const deploy::StatsFilter& f) override {
    return timed("ListPodSandboxStats", [&] { return inner_.listPodSandboxStats(f); });
  }
  core::Result<std::string> pullImage(const std::string& image) override {
    return timed("PullImage", [&] { return inner_.pullImage(image); });
  }

 private:
  template <typename F>
  std::invoke_result_t<F&> timed(const char* name, F&& f) {
    auto t0 = SteadyClock::now();
    auto r = f();
    double spent = ms(SteadyClock::now() - t0);
    std::lock_guard<std::mutex> lock(mu_);
    auto& c = calls_[name];
    c.count++;
    c.ms += spent;
    return r;
  }

  deploy::Runtime& inner_;
  std::mutex mu_;
  std::map<std::string, Calls> calls_;
};

// ---- the limit: the CRI calls made directly
// -------------------------------------------------------------------------

struct Raw {
  deploy::Runtime& rt;
  std::string cgroupParent;
  fs::path logs;

  // What the reconciler must do for a new pod, minus the reconciler: ImageStatus of the image,
  // RunPodSandbox, CreateContainer, StartContainer, one pod after the other.
  void startPods(const std::vector<std::string>& names) {
    for (const auto& name : names) {
      deploy::PodSandboxConfig sb;
      sb.name = name;
      sb.uid = "raw-" + name;
      sb.podNamespace = "bench";
      sb.hostNetwork = true;
      sb.logDirectory = (logs / name).string();
      sb.cgroupParent = cgroupParent + "/podraw-" + name;
      sb.labels = {{"bench", "raw"}};
      fs::create_directories(fs::path(sb.logDirectory) / "c");
      auto image = rt.imageStatus(test::ContainerdHarness::kBusybox);
      if (!image.isOk() || !*image) die("ImageStatus: " + image.status().toString());
      auto id = rt.runPodSandbox(sb, "");
      if (!id.isOk()) die("RunPodSandbox: " + id.status().toString());
      deploy::ContainerConfig cc;
      cc.name = "c";
      cc.image = test::ContainerdHarness::kBusybox;
      cc.command = {"/bin/sleep", "3600"};
      cc.labels = {{"bench", "raw"}};
      cc.logPath = "c/0.log";
      cc.hostNetwork = true;
      auto cid = rt.createContainer(*id, cc, sb);
      if (!cid.isOk()) die("CreateContainer: " + cid.status().toString());
      auto started = rt.startContainer(*cid);
      if (!started.isOk()) die("StartContainer: " + started.toString());
    }
  }
};

// Stops and removes every sandbox (and so its containers) matching `labels`.
void removeSandboxes(deploy::Runtime& rt, const deploy::Labels& labels) {
  auto list = rt.listPodSandbox({"", std::nullopt, labels});
  if (!list.isOk()) die("ListPodSandbox: " + list.status().toString());
  for (const auto& s : *list) {
    (void)rt.stopPodSandbox(s.id);
    auto st = rt.removePodSandbox(s.id);
    if (!st.isOk()) die("RemovePodSandbox: " + st.toString());
  }
}

size_t countRunning(deploy::Runtime& rt) {
  auto list = rt.listContainers({"", "", deploy::ContainerState::kRunning, {}});
  return list.isOk() ? list->size() : 0;
}

// ---- statistics and output
// -------------------------------------------------------------------------

std::string firstLine(const std::vector<std::string>& argv) {
  std::string out;
  if (test::run(argv, &out) != 0) return "unknown";
  return out.substr(0, out.find('\n'));
}

Params parse(int argc, char** argv) {
  Params p;
  CLI::App app{"B4 and B5: desired pod -> running and offline cold boot through the reconciler",
               "outpost_bench_deploy"};
  app.option_defaults()->always_capture_default();
  app.add_option("--out", p.out, "write the results as JSON to this file");
  app.add_option("--reps", p.reps, "repetitions of each scenario")->check(bench::atLeast(5));
  app.add_option("--pods", p.pods, "pods in the N-pod scenarios")->check(bench::atLeast(1));
  bench::parseFlags(app, argc, argv);
  return p;
}

}  // namespace

int run(int argc, char** argv) {
  Params p = parse(argc, argv);
  std::string why = test::ContainerdHarness::unavailableReason();
  if (!why.empty()) die("cannot start containerd: " + why);
  gHarness = std::make_unique<test::ContainerdHarness>();
  try {
    gHarness->start();
  } catch (const std::exception& e) {
    die(e.what());
  }
  auto made = deploy::makeCriRuntime({gHarness->endpoint(), 30s, 30s});
  if (!made.isOk()) die(made.status().toString());
  deploy::RuntimePtr runtime = std::move(made).value();
  auto version = runtime->version();
  if (!version.isOk()) die(version.status().toString());

  test::TempDir state;
  deploy::ReconcilerConfig cfg;
  cfg.stateDir = (state.path() / "agent").string();
  cfg.cgroupParent = gHarness->cgroupParent();
  cfg.sandboxImage = test::ContainerdHarness::kPause;
  cfg.nodeName = "bench";
  Raw raw{*runtime, gHarness->cgroupParent(), state.path() / "raw"};
  TimingRuntime timing(*runtime);
  json callBreakdown;  // CRI calls the agent made in the first repetition of B4, by name
  const deploy::Labels kOurs = {{"outpost.io/managed", "true"}};
  const deploy::Labels kRawPods = {{"bench", "raw"}};

  std::cout << "machine: " << sysconf(_SC_NPROCESSORS_ONLN) << " cores, " << cpuModel() << "\n"
            << "versions: " << version->runtimeName << " " << version->runtimeVersion << " (CRI "
            << version->runtimeApiVersion << "), " << firstLine({"/usr/sbin/runc", "--version"})
            << ", compiler " << __VERSION__ << "\n"
            << "pods: host network, one busybox container each; " << p.pods << " pods, " << p.reps
            << " repetitions\n";

  std::map<std::string, std::vector<double>> samples;
  std::map<std::string, std::vector<double>> counts;
  auto record = [&](int rep, const std::string& name, double v, const char* unit = "ms") {
    samples[name].push_back(v);
    std::printf("rep %d %-28s %10.1f %s\n", rep + 1, name.c_str(), v, unit);
    std::fflush(stdout);
  };

  for (int rep = 0; rep < p.reps; ++rep) {
    // ---- B4: desired pod -> running, 1 pod and N pods, raw then ours.
    for (int n : {1, p.pods}) {
      std::string tag = std::to_string(n);
      auto names = podNames("b4-" + tag + "-r" + std::to_string(rep), n);
      auto runRaw = [&] {
        auto t0 = SteadyClock::now();
        raw.startPods(names);
        record(rep, "b4_raw_" + tag, ms(SteadyClock::now() - t0));
        removeSandboxes(*runtime, kRawPods);
      };
      // Which goes first alternates, so what one leaves behind in containerd burdens both alike.
      if (rep % 2 == 0) runRaw();
      Desired desired;
      Sink sink;
      {
        Agent agent(timing, desired, sink, cfg);
        agent.start();  // nothing desired yet: the agent idles, polling
        timing.take();
        std::vector<std::string> keys;
        for (const auto& name : names) {
          desired.put(keyOf(name), podJson(name).dump());
          keys.push_back(keyOf(name));
        }
        auto t0 = SteadyClock::now();
        agent.reconciler().onDesiredChanged(keys);
        auto last = sink.waitRunning(names.size(), 300s);
        double wall = ms(last - t0);
        record(rep, "b4_ours_" + tag, wall);
        // Inside: the agent's time that is not the calls the raw path makes too (its own code
        // and its extra calls: lists, statuses, the pause image check), per pod.
        auto calls = timing.take();
        double essential = 0;
        for (const char* c : {"RunPodSandbox", "CreateContainer", "StartContainer"})
          essential += calls[c].ms;
        if (calls["ImageStatus"].count > 0)
          essential += calls["ImageStatus"].ms / calls["ImageStatus"].count * n;
        double inRuntime = 0;
        for (const auto& [name, c] : calls) inRuntime += c.ms;
        record(rep, "b4_ours_" + tag + "_added_inside_per_pod", (wall - essential) / n);
        record(rep, "b4_ours_" + tag + "_own_code_per_pod", (wall - inRuntime) / n);
        if (rep == 0) {
          for (const auto& [name, c] : calls)
            callBreakdown[tag][name] = {{"count", c.count}, {"ms", c.ms}};
        }
      }
      removeSandboxes(*runtime, kOurs);
      if (rep % 2 == 1) runRaw();
    }

    // ---- B5: offline cold boot with N cached pods.
    Desired desired;
    auto names = podNames("b5-r" + std::to_string(rep), p.pods);
    for (const auto& name : names) desired.put(keyOf(name), podJson(name).dump());
    {
      Sink sink;
      Agent first(*runtime, desired, sink, cfg);
      first.start();
      sink.waitRunning(names.size(), 300s);
    }
    // (a) The agent restarts; its containers still run.
    {
      Sink sink;
      auto t0 = SteadyClock::now();
      Agent agent(*runtime, desired, sink, cfg);
      agent.start();
      auto last = sink.waitRunning(names.size(), 300s);
      record(rep, "b5a_ours_running", ms(last - t0));
      auto stats = agent.reconciler().stats();
      counts["b5a_containers_recreated"].push_back(static_cast<double>(stats.containersCreated));
      counts["b5a_sandboxes_recreated"].push_back(static_cast<double>(stats.sandboxesCreated));
    }
    // The reference of (a): listing what runs and asking each container's status.
    {
      auto t0 = SteadyClock::now();
      auto sbs = runtime->listPodSandbox({"", std::nullopt, kOurs});
      auto cs = runtime->listContainers({"", "", std::nullopt, kOurs});
      if (!sbs.isOk() || !cs.isOk()) die("list");
      for (const auto& c : *cs) (void)runtime->containerStatus(c.id);
      record(rep, "b5a_raw_list_status", ms(SteadyClock::now() - t0));
    }
    // (b) Every container is killed while no agent runs (a power cut for the pods): the raw calls
    // and the agent each start from N dead sandboxes. Which goes first alternates.
    auto killAll = [&] {
      gHarness->killAllContainers();
      if (!test::waitFor([&] { return countRunning(*runtime) == 0; }, 60s)) die("kill");
    };
    auto rawB5 = [&] {
      auto rawNames = podNames("b5raw-r" + std::to_string(rep), p.pods);
      auto t0 = SteadyClock::now();
      raw.startPods(rawNames);
      record(rep, "b5b_raw", ms(SteadyClock::now() - t0));
      removeSandboxes(*runtime, kRawPods);
    };
    auto oursB5 = [&] {
      Sink sink;
      auto t0 = SteadyClock::now();
      Agent agent(*runtime, desired, sink, cfg);
      agent.start();
      auto last = sink.waitRunning(names.size(), 300s);
      record(rep, "b5b_ours", ms(last - t0));
      auto stats = agent.reconciler().stats();
      counts["b5b_containers_created"].push_back(static_cast<double>(stats.containersCreated));
      counts["b5b_images_pulled"].push_back(static_cast<double>(stats.imagesPulled));
    };
    killAll();
    if (rep % 2 == 0) {
      rawB5();
      oursB5();
    } else {
      oursB5();
      killAll();
      rawB5();
    }
    removeSandboxes(*runtime, kOurs);
  }

  json out;
  out["benchmark"] = "deploy";
  out["unit"] = "ms";
  out["machine"] = {{"nproc", sysconf(_SC_NPROCESSORS_ONLN)}, {"cpu", cpuModel()}};
  out["versions"] = {{"runtime", version->runtimeName + " " + version->runtimeVersion},
                     {"cri", version->runtimeApiVersion},
                     {"runc", firstLine({"/usr/sbin/runc", "--version"})},
                     {"compiler", __VERSION__}};
  out["params"] = {{"reps", p.reps}, {"pods", p.pods}};
  out["b4_agent_cri_calls_first_rep"] = callBreakdown;
  for (auto& [name, v] : samples) out["scenarios"][name] = summary(v);
  for (auto& [name, v] : counts) out["counts"][name] = summary(v);

  auto ratio = [&](const std::string& ours, const std::string& limit) {
    std::vector<double> per;
    for (int i = 0; i < p.reps; ++i) per.push_back(samples[ours][i] / samples[limit][i]);
    double r = median(samples[ours]) / median(samples[limit]);
    std::printf("%-20s / %-20s = %.3f (per-rep min %.3f, max %.3f)\n", ours.c_str(), limit.c_str(),
                r, *std::min_element(per.begin(), per.end()),
                *std::max_element(per.begin(), per.end()));
    return json{
        {"ours", ours}, {"limit", limit}, {"ratio_of_medians", r}, {"per_rep", summary(per)}};
  };
  // Agent-added time per pod: (ours - raw) / pods, per repetition.
  auto added = [&](const std::string& tag, int n) {
    std::vector<double> per;
    for (int i = 0; i < p.reps; ++i)
      per.push_back((samples["b4_ours_" + tag][i] - samples["b4_raw_" + tag][i]) / n);
    std::printf("B4 agent-added per pod, %s pod(s): median %.2f ms (min %.2f, max %.2f)\n",
                tag.c_str(), median(per), *std::min_element(per.begin(), per.end()),
                *std::max_element(per.begin(), per.end()));
    return summary(per);
  };

  std::cout << "\n";
  for (auto& [name, v] : samples) {
    std::printf("%-28s median %10.1f ms (min %.1f, max %.1f)\n", name.c_str(), median(v),
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
  for (auto& [name, v] : counts) {
    std::printf("%-28s median %10.0f    (min %.0f, max %.0f)\n", name.c_str(), median(v),
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
  std::string podsTag = std::to_string(p.pods);
  out["ratios"] = {ratio("b4_ours_1", "b4_raw_1"), ratio("b4_ours_" + podsTag, "b4_raw_" + podsTag),
                   ratio("b5b_ours", "b5b_raw")};
  json addedOne = added("1", 1);
  json addedMany = added(podsTag, p.pods);
  out["agent_added_ms_per_pod"] = {{"1", addedOne}, {podsTag, addedMany}};

  // The target is judged on the inside measure (wall minus the raw path's calls): the wall-time
  // difference of two runs is within the runtime's noise, either sign.
  double worstAdded = std::max(median(samples["b4_ours_1_added_inside_per_pod"]),
                               median(samples["b4_ours_" + podsTag + "_added_inside_per_pod"]));
  double coldRatio = median(samples["b5b_ours"]) / median(samples["b5b_raw"]);
  double recreated = *std::max_element(counts["b5a_containers_recreated"].begin(),
                                       counts["b5a_containers_recreated"].end());
  out["targets"] = {
      {{"what", "B4 agent-added ms per pod <= 10 (inside)"},
       {"value", worstAdded},
       {"met", worstAdded <= 10}},
      {{"what", "B5a containers recreated == 0"}, {"value", recreated}, {"met", recreated == 0}},
      {{"what", "B5b ours / raw CRI <= 1.1"}, {"value", coldRatio}, {"met", coldRatio <= 1.1}}};
  for (const auto& t : out["targets"]) {
    std::printf("target %-36s %.3f %s\n", t["what"].get<std::string>().c_str(),
                t["value"].get<double>(), t["met"].get<bool>() ? "MET" : "NOT MET");
  }

  runtime.reset();
  gHarness.reset();  // containerd, shims, cgroups, mounts
  if (!p.out.empty()) {
    std::ofstream f(p.out);
    f << out.dump(2) << "\n";
    if (!f) die("cannot write " + p.out);
    std::cout << "wrote " << p.out << "\n";
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // BenchFailure, or a helper that threw
    gHarness.reset();                  // containerd, shims, cgroups, mounts
    std::cerr << "bench: " << e.what() << "\n";
    return 1;
  }
}
