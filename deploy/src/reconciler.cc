// The pod reconciler: one worker (state machine) per pod on deploy's loop, level-triggered.
//
// A pass over a pod observes what the runtime runs for it (by our labels), compares it with the
// desired spec, and makes one step towards it: sandbox, init containers in order, containers,
// restarts with crash-loop back-off, replacement on spec change, garbage collection. Then it
// computes the pod's status and reports it when it changed.

#include "outpost/deploy/reconciler.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

#include "host_paths.h"
#include "outpost/deploy/cgroup.h"
#include "outpost/validation/validation.h"
#include "pod_spec.h"
#include "pod_status.h"
#include "volumes.h"

namespace outpost::deploy {
namespace {

constexpr const char* kManaged = "outpost.io/managed";
constexpr const char* kPodUid = "outpost.io/pod-uid";
constexpr const char* kPodKey = "outpost.io/pod-key";
constexpr const char* kSandboxHash = "outpost.io/sandbox-hash";
constexpr const char* kContainerName = "outpost.io/container";
constexpr const char* kContainerHash = "outpost.io/container-hash";
constexpr const char* kGrace = "outpost.io/grace-seconds";
constexpr const char* kNormal = "Normal";
constexpr const char* kWarning = "Warning";
// The slot of the pod's sandbox among its containers' (Worker::warned, Worker::refused).
constexpr const char* kSandboxSlot = "#sandbox";
// Pod phases, as outpost_pods counts them; anything else counts as the last.
constexpr const char* kPhases[] = {"Pending", "Running", "Succeeded", "Failed", "Unknown"};

std::string label(const Labels& l, const char* key) {
  auto it = l.find(key);
  return it == l.end() ? std::string() : it->second;
}

// Just the host's first non-loopback IPv4 address, for host network pods.
std::string hostIp() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  std::ifstream hosts("/etc/hosts");
  std::string line;
  while (std::getline(hosts, line)) {
    std::istringstream in(line);
    std::string ip, host;
    in >> ip;
    while (in >> host) {
      if (host == name && ip.find(':') == std::string::npos && ip.rfind("127.", 0) != 0) return ip;
    }
  }
  return "";
}

}  // namespace

class Reconciler::Impl : public std::enable_shared_from_this<Reconciler::Impl> {
 public:
  Impl(core::EventLoop& loop, Runtime& runtime, DesiredPods& desired, StatusSink& sink,
       ReconcilerConfig config, core::Logger log, core::MetricsRegistry* metrics)
      : loop_(loop),
        runtime_(runtime),
        desired_(desired),
        sink_(sink),
        config_(std::move(config)),
        log_(std::move(log)),
        paths_(config_.stateDir) {
    if (metrics) {
      createdCounter_ = &metrics->counter("outpost_deploy_containers_created_total",
                                          "Containers the reconciler created");
      syncHistogram_ = &metrics->histogram("outpost_deploy_sync_seconds",
                                           "Duration of a reconcile pass over all pods",
                                           {0.001, 0.01, 0.1, 1, 10});
      for (const char* phase : kPhases) {
        phaseGauges_.push_back(
            &metrics->gauge("outpost_pods", "Pods on the node by phase", {{"phase", phase}}));
      }
    }
    metrics_ = metrics;
    hostIp_ = hostIp();
    node_.nodeName = config_.nodeName;
    node_.reservedMilliCpu = config_.reservedMilliCpu;
    node_.reservedMemoryBytes = config_.reservedMemoryBytes;
    node_.maxPods = config_.maxPods;
    node_.hostIp = hostIp_;
    readHostFacts(node_);
  }

  void start(std::function<void()> onColdBoot) {
    auto self = shared_from_this();
    loop_.post([self, onColdBoot = std::move(onColdBoot)] {
      if (self->stopped_) return;
      self->loadAllDesired();
      self->syncAllNow();
      self->reportNode();
      self->log_.info("cold boot pass done: ", self->workers_.size(), " desired pods");
      if (onColdBoot) onColdBoot();
      std::weak_ptr<Impl> weak = self;
      self->timers_.push_back(self->loop_.runEvery(self->config_.pollInterval, [weak] {
        if (auto s = weak.lock()) s->syncAllNow();
      }));
      self->timers_.push_back(self->loop_.runEvery(self->config_.resyncInterval, [weak] {
        if (auto s = weak.lock(); s && !s->stopped_) {
          s->loadAllDesired();
          s->syncAllNow();
        }
      }));
      self->timers_.push_back(self->loop_.runEvery(self->config_.nodeStatusInterval, [weak] {
        if (auto s = weak.lock(); s && !s->stopped_) s->reportNode(/*heartbeat=*/true);
      }));
    });
  }

  // Callable from any thread, also after the loop stopped: posted work checks `stopped_` first.
  void stop() {
    stopped_ = true;
    auto self = shared_from_this();
    auto cancel = [self] {
      for (auto id : self->timers_) self->loop_.cancel(id);
      self->timers_.clear();
      for (auto& [key, w] : self->workers_) {
        if (w.wakeTimer) self->loop_.cancel(*w.wakeTimer);
        w.wakeTimer.reset();
      }
    };
    if (loop_.isInLoopThread()) {
      cancel();
    } else {
      loop_.post(cancel);
    }
  }

  void onDesiredChanged(std::vector<std::string> keys) {
    auto self = shared_from_this();
    loop_.post([self, keys = std::move(keys)] {
      if (self->stopped_) return;
      std::set<std::string> pods;
      bool refs = false;
      for (const auto& k : keys) {
        if (k.find("/pod/") != std::string::npos) {
          pods.insert(k);
        } else {
          refs = true;  // a configmap or secret: re-project every pod that uses it
        }
      }
      for (const auto& k : pods) self->loadDesired(k);
      if (refs) {
        for (const auto& [k, w] : self->workers_) {
          if (w.spec && self->usesRef(*w.spec, keys)) pods.insert(k);
        }
      }
      for (const auto& k : pods) self->syncOne(k);
    });
  }

  void syncAll() {
    auto self = shared_from_this();
    loop_.post([self] {
      if (self->stopped_) return;
      self->loadAllDesired();
      self->syncAllNow();
    });
  }

  ReconcilerStats stats() {
    if (loop_.isInLoopThread()) return stats_;
    std::lock_guard<std::mutex> lock(statsMu_);
    return statsCopy_;
  }

  std::optional<PodRuntimeInfo> podInfo(const std::string& key) const {
    std::lock_guard<std::mutex> lock(infoMu_);
    auto it = info_.find(key);
    if (it == info_.end()) return std::nullopt;
    return it->second;
  }

 private:
  struct Backoff {
    core::Duration delay{0};
    std::string exitedId;  // the exited container this back-off entry has seen
    core::MonoTime exitSeenAt{};
  };
  // A step that failed (a pull, a creation the runtime refused): no new attempt before
  // `retryAt`. While it keeps failing for the same `cause` (the image, the spec's hash) the delay
  // doubles up to a cap; a new cause starts afresh, as does a success (the entry is erased).
  struct RetryBackoff {
    std::string cause;
    core::Duration delay{0};
    core::MonoTime retryAt{};
    std::string message;
  };
  struct Probe {
    std::string containerId;
    core::MonoTime nextAt{};
    int failures = 0;
  };
  struct Worker {
    std::string key;
    std::optional<PodSpec> spec;  // nullopt: no longer desired, terminate
    std::string invalid;          // why the desired JSON cannot be run
    std::map<std::string, Backoff> backoff;
    std::map<std::string, Probe> probes;
    std::map<std::string, RetryBackoff> pulls;    // failed pulls, by container name
    std::map<std::string, RetryBackoff> refused;  // runtime refusals, by name or kSandboxSlot
    std::map<std::string, std::pair<std::string, std::string>> waiting;  // name -> reason, msg
    std::map<std::string, uint32_t> attempts;      // highest attempt seen per container name
    std::map<std::string, std::string> exitNoted;  // name -> id of the last exit made an event
    std::map<std::string, std::string> warned;     // slot -> reason and message last warned
    std::string phase;                             // of the last status published
    Transitions transitions;
    std::string lastStatus;
    std::optional<core::TimerId> wakeTimer;
    core::MonoTime wakeAt{};
  };
  struct Observed {
    std::vector<PodSandbox> sandboxes;
    std::vector<Container> containers;
  };

  // --- desired state ---------------------------------------------------------------------------

  void loadAllDesired() {
    std::set<std::string> seen;
    for (auto& rec : desired_.listPods()) {
      seen.insert(rec.key);
      applyDesired(rec.key, std::optional<std::string>(std::move(rec.json)));
    }
    for (auto& [key, w] : workers_) {
      if (!seen.count(key)) w.spec.reset(), w.invalid.clear();
    }
  }

  void loadDesired(const std::string& key) { applyDesired(key, desired_.getObject(key)); }

  void applyDesired(const std::string& key, const std::optional<std::string>& text) {
    auto& w = workers_[key];
    w.key = key;
    if (!text) {
      w.spec.reset();
      w.invalid.clear();
      return;
    }
    auto parsed = parsePod(key, *text, config_.defaultNamespace);
    if (!parsed) {
      // Logged when it appears or changes, not at every re-read; the event counts the re-reads.
      if (w.invalid != parsed.status().message()) {
        w.invalid = parsed.status().message();
        log_.warn("pod ", key, " cannot run: ", w.invalid);
      }
      event(w, kWarning, "FailedValidation", "", "The desired pod cannot run: " + w.invalid);
      return;  // keeps what runs from an earlier valid spec
    }
    w.invalid.clear();
    if (w.spec && w.spec->uid != parsed->uid) {
      // Same key, new pod: the old one terminates as an orphan of its uid.
      log_.info("pod ", key, " replaced by a new uid");
    }
    if (!parsed->unsupported.empty()) {
      std::string fields;
      for (const auto& f : parsed->unsupported) fields += " " + f;
      log_.warn("pod ", key, " has unsupported fields:", fields);
    }
    w.spec = std::move(parsed).value();
  }

  bool usesRef(const PodSpec& pod, const std::vector<std::string>& keys) {
    std::set<std::string> refs;
    for (const auto& v : pod.volumes) {
      if (v.kind == VolumeSpec::Kind::kConfigMap)
        refs.insert(pod.podNamespace + "/configmap/" + v.refName);
      if (v.kind == VolumeSpec::Kind::kSecret)
        refs.insert(pod.podNamespace + "/secret/" + v.refName);
    }
    for (const auto* list : {&pod.initContainers, &pod.containers}) {
      for (const auto& c : *list) {
        for (const auto& e : c.env) {
          if (e.source == EnvVarSpec::Source::kConfigMap)
            refs.insert(pod.podNamespace + "/configmap/" + e.refName);
          if (e.source == EnvVarSpec::Source::kSecret)
            refs.insert(pod.podNamespace + "/secret/" + e.refName);
        }
        for (const auto& f : c.envFrom)
          refs.insert(pod.podNamespace + (f.secret ? "/secret/" : "/configmap/") + f.name);
      }
    }
    for (const auto& k : keys) {
      if (refs.count(k)) return true;
    }
    return false;
  }

  // --- observing -------------------------------------------------------------------------------

  std::optional<Observed> observe(const Labels& selector) {
    Observed o;
    auto sandboxes = runtime_.listPodSandbox(SandboxFilter{"", std::nullopt, selector});
    if (!sandboxes) {
      runtimeDown(sandboxes.status());
      return std::nullopt;
    }
    auto containers = runtime_.listContainers(ContainerFilter{"", "", std::nullopt, selector});
    if (!containers) {
      runtimeDown(containers.status());
      return std::nullopt;
    }
    runtimeUp();
    o.sandboxes = std::move(sandboxes).value();
    o.containers = std::move(containers).value();
    return o;
  }

  void runtimeDown(const core::Status& s) {
    if (node_.runtimeReady || node_.runtimeMessage.empty()) {
      log_.warn("runtime unreachable: ", s.toString());
    }
    bool changed = node_.runtimeReady;
    node_.runtimeReady = false;
    node_.runtimeMessage = "container runtime: " + s.toString();
    if (changed) reportNode();
  }

  void runtimeUp() {
    if (!node_.runtimeReady) {
      auto v = runtime_.version();
      if (v) node_.runtime = *v;
      node_.runtimeReady = true;
      node_.runtimeMessage.clear();
      reportNode();
    }
  }

  std::optional<ContainerStatus> status(const Container& c) {
    auto it = statusCache_.find(c.id);
    if (it != statusCache_.end() && it->second.container.state == c.state &&
        c.state != ContainerState::kCreated) {
      return it->second;
    }
    auto st = runtime_.containerStatus(c.id);
    if (!st) return std::nullopt;
    st->container.podSandboxId = c.podSandboxId;
    statusCache_[c.id] = *st;
    return *st;
  }

  // --- passes ----------------------------------------------------------------------------------

  void syncAllNow() {
    if (stopped_) return;
    auto started = loop_.clock().now();
    auto observed = observe({{kManaged, "true"}});
    if (!observed) return;
    std::set<std::string> uids;
    std::vector<std::string> keys;
    for (const auto& [key, w] : workers_) keys.push_back(key);
    for (const auto& key : keys) {
      auto it = workers_.find(key);
      if (it == workers_.end()) continue;
      if (it->second.spec) uids.insert(it->second.spec->uid);
      syncGuarded(it->second, *observed);
    }
    removeDeadSandboxes();
    collectOrphans(*observed, uids);
    pruneStatusCache(*observed);
    copyStats();
    if (syncHistogram_) {
      syncHistogram_->observe(std::chrono::duration<double>(loop_.clock().now() - started).count());
    }
  }

  void syncOne(const std::string& key) {
    if (stopped_) return;
    auto it = workers_.find(key);
    if (it == workers_.end()) return;
    Labels selector = {{kManaged, "true"}};
    if (it->second.spec) selector[kPodKey] = labelValue(key);
    auto observed = observe(it->second.spec ? selector : Labels{{kManaged, "true"}});
    if (!observed) return;
    bool deleting = !it->second.spec;
    syncGuarded(it->second, *observed);  // may erase the worker
    removeDeadSandboxes();
    if (deleting) {
      // Everything of the old uids under this key goes too.
      std::set<std::string> uids;
      for (const auto& [k, w] : workers_) {
        if (w.spec) uids.insert(w.spec->uid);
      }
      collectOrphans(*observed, uids);
    }
    copyStats();
  }

  // Label values cannot hold every character a key can; keys are "<ns>/pod/<name>".
  static std::string labelValue(const std::string& key) {
    std::string out = key;
    std::replace(out.begin(), out.end(), '/', '.');
    return out;
  }

  // One pod's pass; whatever it throws stays that pod's problem, reported on it, and the pass goes
  // on with the other pods.
  void syncGuarded(Worker& w, const Observed& all) {
    std::string key = w.key;
    try {
      syncWorker(w, all);
      if (auto it = workers_.find(key); it != workers_.end()) it->second.warned.erase("#sync");
    } catch (const std::exception& e) {
      auto it = workers_.find(key);  // syncWorker may have erased it
      if (it == workers_.end()) {
        log_.warn("pod ", key, ": ", e.what());
        return;
      }
      std::string why = std::string("the pod cannot be synced: ") + e.what();
      if (warnOnce(it->second, "", "FailedSync", why, "#sync")) log_.warn("pod ", key, ": ", why);
      publish(it->second, invalidPodStatusJson(why, it->second.transitions, loop_.clock().wallNow(),
                                               "SyncError"));
    }
  }

  void syncWorker(Worker& w, const Observed& all) {
    stats_.syncs++;
    if (!w.invalid.empty()) {
      // Also for a pod that never had a valid spec: its status says why it does not run.
      publish(w, invalidPodStatusJson(w.invalid, w.transitions, loop_.clock().wallNow()));
      return;
    }
    if (!w.spec) {
      terminate(w.key);
      return;
    }
    const PodSpec& pod = *w.spec;
    {
      std::lock_guard<std::mutex> lock(infoMu_);
      auto& info = info_[w.key];
      info.uid = pod.uid;
      info.logDirectory = logDirectoryOf(pod.uid);
    }
    std::vector<PodSandbox> sandboxes;
    std::vector<Container> containers;
    for (const auto& s : all.sandboxes) {
      if (label(s.labels, kPodUid) == pod.uid) sandboxes.push_back(s);
    }
    for (const auto& c : all.containers) {
      if (label(c.labels, kPodUid) == pod.uid) containers.push_back(c);
    }
    for (const auto& c : containers) {
      auto& a = w.attempts[label(c.labels, kContainerName)];
      a = std::max(a, c.attempt);
    }
    // 1. The sandbox: the newest ready one with the current sandbox hash; others go.
    std::sort(sandboxes.begin(), sandboxes.end(),
              [](const auto& a, const auto& b) { return a.createdAt > b.createdAt; });
    const PodSandbox* current = nullptr;
    uint32_t sandboxAttempt = 0;
    for (const auto& s : sandboxes) {
      sandboxAttempt = std::max(sandboxAttempt, s.attempt + 1);
      if (!current && s.state == SandboxState::kReady &&
          label(s.labels, kSandboxHash) == pod.sandboxHash) {
        current = &s;
      }
    }
    for (const auto& s : sandboxes) {
      if (&s == current) continue;
      bool live = s.state == SandboxState::kReady ||
                  std::any_of(containers.begin(), containers.end(), [&](const Container& c) {
                    return c.podSandboxId == s.id && c.state != ContainerState::kExited;
                  });
      if (live) {
        // It may hold what the new one needs (host ports): it goes first.
        removeSandbox(s, containers, std::chrono::seconds(pod.gracePeriodSeconds));
      } else {
        // Dead (after a reboot, every sandbox is): removed after every pod's pass, off the path
        // to running.
        deadSandboxes_.push_back({s, containers});
      }
    }
    PodSandboxConfig sandboxConfig = makeSandboxConfig(pod, sandboxAttempt);
    std::string sandboxId;
    UnixNanos sandboxCreated = 0;
    if (current) {
      sandboxId = current->id;
      sandboxCreated = current->createdAt;
      sandboxConfig.attempt = current->attempt;
    }
    // 2. Volumes (re-projected every pass: a configmap change shows up in the files).
    auto volumes = prepareVolumes(pod, config_.stateDir, desired_, config_.hostPathAllow);
    w.waiting.clear();
    if (!volumes) {
      for (const auto* list : {&pod.initContainers, &pod.containers})
        for (const auto& c : *list)
          w.waiting[c.name] = {"CreateContainerConfigError", volumes.status().message()};
      warnOnce(w, "", "FailedMount", "Volumes not ready: " + volumes.status().message(),
               "#volumes");
      if (volumes.status().code() == core::Code::kNotFound) askForRefs(pod);
    } else {
      w.warned.erase("#volumes");
    }
    if (!current && volumes) {
      std::string cause = pod.uid + "/" + pod.sandboxHash;
      const RetryBackoff* held = heldBack(w, w.refused, kSandboxSlot, cause);
      if (held) {
        for (const auto* list : {&pod.initContainers, &pod.containers})
          for (const auto& c : *list)
            w.waiting[c.name] = {"ContainerCreating", backOffMessage(*held, "pod sandbox")};
      } else if (auto id = runSandbox(w, pod, sandboxConfig, cause)) {
        sandboxId = *id;
        auto st = runtime_.podSandboxStatus(sandboxId);
        if (st) sandboxCreated = st->sandbox.createdAt;
      }
    }
    // Containers of the current sandbox, by name, newest first.
    std::map<std::string, std::vector<Container>> byName;
    for (const auto& c : containers) {
      if (c.podSandboxId != sandboxId || sandboxId.empty()) continue;
      byName[label(c.labels, kContainerName)].push_back(c);
    }
    for (auto& [name, list] : byName) {
      std::sort(list.begin(), list.end(),
                [](const auto& a, const auto& b) { return a.createdAt > b.createdAt; });
    }
    // Containers nobody wants any more.
    std::set<std::string> wanted;
    for (const auto* list : {&pod.initContainers, &pod.containers})
      for (const auto& c : *list) wanted.insert(c.name);
    for (auto it = byName.begin(); it != byName.end();) {
      if (!wanted.count(it->first)) {
        for (const auto& c : it->second)
          removeContainer(c, std::chrono::seconds(pod.gracePeriodSeconds));
        it = byName.erase(it);
      } else {
        ++it;
      }
    }

    PodView view;
    view.spec = &pod;
    view.sandboxReady = !sandboxId.empty();
    view.sandboxCreatedAt = sandboxCreated;
    view.hostIp = hostIp_;
    if (pod.hostNetwork) view.podIp = hostIp_;

    // 3. Init containers, in order, each to completion.
    bool initDone = true;
    for (const auto& spec : pod.initContainers) {
      ContainerView v = viewOf(w, spec, byName[spec.name]);
      if (initDone && !sandboxId.empty() && volumes) {
        initDone = stepInit(w, pod, spec, byName[spec.name], sandboxId, sandboxConfig, *volumes, v);
        v = viewOf(w, spec, byName[spec.name]);
      } else {
        initDone = false;
      }
      view.init.push_back(std::move(v));
    }
    // 4. Containers.
    for (const auto& spec : pod.containers) {
      if (initDone && !sandboxId.empty() && volumes) {
        stepContainer(w, pod, spec, byName[spec.name], sandboxId, sandboxConfig, *volumes);
      }
      view.containers.push_back(viewOf(w, spec, byName[spec.name]));
    }
    // 5. Exited containers beyond the newest two of each name go.
    for (auto& [name, list] : byName) {
      for (size_t i = 2; i < list.size(); ++i) {
        if (list[i].state == ContainerState::kExited) removeContainer(list[i], {});
      }
    }
    if (!sandboxId.empty() && view.podIp.empty()) {
      auto st = runtime_.podSandboxStatus(sandboxId);
      if (st) view.podIp = st->ip;
    }
    publish(w, podStatusJson(view, w.transitions, loop_.clock().wallNow()));
  }

  // A new sandbox for `pod`; nullopt when the runtime refused it (the containers wait, the next
  // attempt backs off).
  std::optional<std::string> runSandbox(Worker& w, const PodSpec& pod,
                                        const PodSandboxConfig& sandboxConfig,
                                        const std::string& cause) {
    // A failed pull of the pause image is not the end: the runtime may still have it under another
    // name, so RunPodSandbox decides.
    ensureImage(config_.sandboxImage, PullPolicy::kIfNotPresent).ignore();
    auto logs = paths_.makeLogDir(pod.uid, "");
    auto id = logs.isOk() ? runtime_.runPodSandbox(sandboxConfig, pod.runtimeClassName)
                          : core::Result<std::string>(logs);
    if (!id) {
      refusedBy(w, kSandboxSlot, cause, "RunPodSandbox", id.status());
      warnOnce(w, "", "FailedCreatePodSandBox",
               "Failed to create pod sandbox: " + id.status().message(), kSandboxSlot);
      for (const auto* list : {&pod.initContainers, &pod.containers})
        for (const auto& c : *list)
          w.waiting[c.name] = {"ContainerCreating", id.status().message()};
      return std::nullopt;
    }
    stats_.sandboxesCreated++;
    log_.info("pod ", w.key, ": sandbox ", id->substr(0, 12), " attempt ", sandboxConfig.attempt);
    w.warned.erase(kSandboxSlot);
    w.refused.erase(kSandboxSlot);
    event(w, kNormal, "SandboxCreated", "",
          "Pod sandbox " + id->substr(0, 12) + " created (attempt " +
              std::to_string(sandboxConfig.attempt) + ")");
    return *id;
  }

  // --- back-off of failed steps ----------------------------------------------------------------

  // The back-off of `slot` while it holds for `cause`, or nullptr when the step may be tried now.
  // An entry for another cause is dropped: that is a new episode. Waking the pod at its end is
  // arranged here.
  const RetryBackoff* heldBack(Worker& w, std::map<std::string, RetryBackoff>& backoffs,
                               const std::string& slot, const std::string& cause) {
    auto it = backoffs.find(slot);
    if (it == backoffs.end()) return nullptr;
    if (it->second.cause != cause) {
      backoffs.erase(it);
      return nullptr;
    }
    if (loop_.clock().now() >= it->second.retryAt) return nullptr;
    wakeAt(w, it->second.retryAt);
    return &it->second;
  }

  // Records that `slot` failed again for `cause`: the next attempt waits `initial`, doubling up
  // to `max`. True when this failure begins an episode (the first since the step last succeeded
  // or its cause changed): the one failure worth a log line.
  bool failedAgain(Worker& w, std::map<std::string, RetryBackoff>& backoffs,
                   const std::string& slot, const std::string& cause, const std::string& message,
                   core::Duration initial, core::Duration max) {
    auto& b = backoffs[slot];
    bool first = b.cause != cause || b.delay == core::Duration::zero();
    if (b.cause != cause) b = RetryBackoff{cause, core::Duration::zero(), {}, ""};
    b.delay = b.delay == core::Duration::zero() ? initial : std::min(b.delay * 2, max);
    b.retryAt = loop_.clock().now() + b.delay;
    b.message = message;
    wakeAt(w, b.retryAt);
    return first;
  }

  // The runtime refused to create something of the pod (its sandbox, a container): retrying at
  // once would get the same answer (a privileged container, an unknown runtime handler), so the
  // next attempt waits as a crash loop does, and the refusal is logged once per episode.
  void refusedBy(Worker& w, const std::string& slot, const std::string& cause, const char* call,
                 const core::Status& s) {
    if (failedAgain(w, w.refused, slot, cause, s.message(), config_.backoffInitial,
                    config_.backoffMax)) {
      log_.warn("pod ", w.key, ": ", call, (slot == kSandboxSlot ? "" : " " + slot), ": ",
                s.toString(), " (retried with back-off; not logged again until it changes)");
    }
  }

  static std::string backOffMessage(const RetryBackoff& b, const std::string& what) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(b.delay).count();
    return "Back-off " + std::to_string(secs) + "s creating " + what + ": " + b.message;
  }

  ContainerView viewOf(Worker& w, const ContainerSpec& spec, const std::vector<Container>& list) {
    ContainerView v;
    v.spec = &spec;
    if (!list.empty()) v.current = status(list[0]);
    if (list.size() > 1) v.previous = status(list[1]);
    auto it = w.waiting.find(spec.name);
    if (it != w.waiting.end()) {
      v.waitingReason = it->second.first;
      v.waitingMessage = it->second.second;
    }
    return v;
  }

  // One step for an init container; true when it has completed successfully.
  bool stepInit(Worker& w, const PodSpec& pod, const ContainerSpec& spec,
                std::vector<Container>& list, const std::string& sandboxId,
                const PodSandboxConfig& sandboxConfig,
                const std::map<std::string, std::string>& volumes, ContainerView& v) {
    if (list.empty()) {
      createAndStart(w, pod, spec, list, sandboxId, sandboxConfig, volumes);
      return false;
    }
    const Container& latest = list[0];
    if (latest.state == ContainerState::kCreated) {
      startCreated(w, spec, latest);
      return false;
    }
    if (latest.state != ContainerState::kExited) return false;
    if (v.current) noteExit(w, spec.name, *v.current);
    if (latest.labels.count(kContainerHash) && label(latest.labels, kContainerHash) != spec.hash) {
      createAndStart(w, pod, spec, list, sandboxId, sandboxConfig, volumes);
      return false;
    }
    if (v.current && v.current->exitCode == 0) return true;
    if (pod.restartPolicy == RestartPolicy::kNever) return false;
    restartWithBackoff(w, pod, spec, list, sandboxId, sandboxConfig, volumes, v.current);
    return false;
  }

  void stepContainer(Worker& w, const PodSpec& pod, const ContainerSpec& spec,
                     std::vector<Container>& list, const std::string& sandboxId,
                     const PodSandboxConfig& sandboxConfig,
                     const std::map<std::string, std::string>& volumes) {
    if (list.empty()) {
      createAndStart(w, pod, spec, list, sandboxId, sandboxConfig, volumes);
      return;
    }
    const Container latest = list[0];
    bool changed = label(latest.labels, kContainerHash) != spec.hash;
    switch (latest.state) {
      case ContainerState::kRunning:
        if (changed) {
          log_.info("pod ", w.key, ": container ", spec.name, " spec changed, replacing");
          event(w, kNormal, "Killing", spec.name,
                "Stopping container " + spec.name + ": its spec changed, it will be replaced");
          removeContainer(latest, std::chrono::seconds(pod.gracePeriodSeconds));
          list.erase(list.begin());
          w.backoff.erase(spec.name);
          createAndStart(w, pod, spec, list, sandboxId, sandboxConfig, volumes);
        } else {
          probe(w, pod, spec, latest);
        }
        return;
      case ContainerState::kCreated:
        startCreated(w, spec, latest);
        return;
      case ContainerState::kExited: {
        if (changed) {
          w.backoff.erase(spec.name);
          createAndStart(w, pod, spec, list, sandboxId, sandboxConfig, volumes);
          return;
        }
        auto st = status(latest);
        if (!st) return;
        noteExit(w, spec.name, *st);
        bool restart = pod.restartPolicy == RestartPolicy::kAlways ||
                       (pod.restartPolicy == RestartPolicy::kOnFailure && st->exitCode != 0);
        if (restart) restartWithBackoff(w, pod, spec, list, sandboxId, sandboxConfig, volumes, st);
        return;
      }
      default:
        return;
    }
  }

  void restartWithBackoff(Worker& w, const PodSpec& pod, const ContainerSpec& spec,
                          std::vector<Container>& list, const std::string& sandboxId,
                          const PodSandboxConfig& sandboxConfig,
                          const std::map<std::string, std::string>& volumes,
                          const std::optional<ContainerStatus>& exited) {
    auto now = loop_.clock().now();
    auto& bo = w.backoff[spec.name];
    if (bo.exitedId != list[0].id) {
      bo.exitedId = list[0].id;
      bo.exitSeenAt = now;
      if (exited && exited->startedAt > 0 && exited->finishedAt > exited->startedAt &&
          std::chrono::nanoseconds(exited->finishedAt - exited->startedAt) >=
              config_.backoffReset) {
        bo.delay = core::Duration::zero();  // it ran long enough: a fresh start
      }
    }
    auto readyAt = bo.exitSeenAt + bo.delay;
    if (now < readyAt) {
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(bo.delay).count();
      warnOnce(w, spec.name, "BackOff",
               "Back-off " + std::to_string(secs) + "s restarting failed container " + spec.name);
      w.waiting[spec.name] = {"CrashLoopBackOff", "back-off " + std::to_string(secs) +
                                                      "s restarting failed container=" + spec.name +
                                                      " pod=" + pod.name + "_" + pod.podNamespace +
                                                      "(" + pod.uid + ")"};
      wakeAt(w, readyAt);
      return;
    }
    bo.delay = bo.delay == core::Duration::zero()
                   ? core::Duration(config_.backoffInitial)
                   : std::min<core::Duration>(bo.delay * 2, config_.backoffMax);
    createAndStart(w, pod, spec, list, sandboxId, sandboxConfig, volumes);
  }

  void wakeAt(Worker& w, core::MonoTime at) {
    if (w.wakeTimer && w.wakeAt <= at && w.wakeAt > loop_.clock().now()) return;
    if (w.wakeTimer) loop_.cancel(*w.wakeTimer);
    w.wakeAt = at;
    std::weak_ptr<Impl> weak = shared_from_this();
    std::string key = w.key;
    w.wakeTimer = loop_.runAfter(at - loop_.clock().now(), [weak, key] {
      auto self = weak.lock();
      if (!self || self->stopped_) return;
      auto it = self->workers_.find(key);
      if (it != self->workers_.end()) it->second.wakeTimer.reset();
      self->syncOne(key);
    });
  }

  void probe(Worker& w, const PodSpec& pod, const ContainerSpec& spec, const Container& c) {
    if (!spec.liveness) return;
    auto now = loop_.clock().now();
    auto& p = w.probes[spec.name];
    const auto& ps = *spec.liveness;
    if (p.containerId != c.id) {
      p = Probe{c.id,
                now + std::chrono::seconds(ps.initialDelaySeconds > 0 ? ps.initialDelaySeconds
                                                                      : ps.periodSeconds),
                0};
    }
    if (now >= p.nextAt) {
      auto r = runtime_.execSync(c.id, ps.command, std::chrono::seconds(ps.timeoutSeconds));
      bool ok = r && r->exitCode == 0;
      p.failures = ok ? 0 : p.failures + 1;
      p.nextAt = now + std::chrono::seconds(ps.periodSeconds);
      if (p.failures >= ps.failureThreshold) {
        log_.info("pod ", w.key, ": container ", spec.name, " failed its liveness probe, killing");
        event(w, kWarning, "Unhealthy", spec.name,
              "Liveness probe failed " + std::to_string(p.failures) + " times, killing container " +
                  spec.name);
        auto s = runtime_.stopContainer(c.id, std::chrono::seconds(pod.gracePeriodSeconds));
        if (!s.isOk()) log_.warn("StopContainer: ", s.toString());
        statusCache_.erase(c.id);
        p = Probe{};
      }
    }
    if (!p.containerId.empty()) wakeAt(w, p.nextAt);
  }

  void startCreated(Worker& w, const ContainerSpec& spec, const Container& c) {
    auto s = runtime_.startContainer(c.id);
    if (!s.isOk()) {
      w.waiting[spec.name] = {"RunContainerError", s.message()};
      // Made again on a later pass: not before the back-off.
      refusedBy(w, spec.name, spec.hash + "/" + c.podSandboxId, "StartContainer", s);
      warnOnce(w, spec.name, "Failed", "Error: StartContainer: " + s.message());
      removeContainer(c, {});
    }
  }

  // The sandbox image: present, or pulled (best effort; RunPodSandbox has the last word).
  core::Status ensureImage(const std::string& image, PullPolicy policy) {
    if (image.empty()) return core::okStatus();
    if (policy != PullPolicy::kAlways) {
      OUTPOST_ASSIGN_OR_RETURN(auto present, runtime_.imageStatus(image));
      if (present) return core::okStatus();
    }
    auto ref = runtime_.pullImage(image);
    if (!ref) return ref.status();
    stats_.imagesPulled++;
    return core::okStatus();
  }

  // A container's image, as the kubelet's image manager does it: a present image is used
  // (IfNotPresent, Never; Always too when its pull fails: offline first); a failed pull waits
  // with ImagePullBackOff (pullBackoffInitial doubling to pullBackoffMax) before the next one.
  // True when the image is there; otherwise the container's waiting reason is set.
  bool imageReady(Worker& w, const ContainerSpec& spec) {
    if (spec.image.empty()) return true;
    const RetryBackoff* held = heldBack(w, w.pulls, spec.name, spec.image);
    bool backingOff = held != nullptr;
    if (spec.pullPolicy != PullPolicy::kAlways || backingOff) {
      auto present = runtime_.imageStatus(spec.image);
      if (!present) {
        w.waiting[spec.name] = {"ErrImagePull", present.status().message()};
        return false;
      }
      if (*present) {
        if (backingOff) {
          log_.info("pod ", w.key, ": image ", spec.image, " is present now");
          event(w, kNormal, "Pulled", spec.name,
                "Container image \"" + spec.image + "\" is present now");
        }
        w.pulls.erase(spec.name);
        return true;
      }
      if (spec.pullPolicy == PullPolicy::kNever) {
        w.waiting[spec.name] = {"ErrImageNeverPull", "Container image \"" + spec.image +
                                                         "\" is not present with pull policy "
                                                         "of Never"};
        warnOnce(w, spec.name, "ErrImageNeverPull", w.waiting[spec.name].second);
        return false;
      }
    }
    if (backingOff) {
      w.waiting[spec.name] = {"ImagePullBackOff",
                              "Back-off pulling image \"" + spec.image + "\": " + held->message};
      return false;
    }
    auto ref = runtime_.pullImage(spec.image);
    if (ref) {
      stats_.imagesPulled++;
      w.pulls.erase(spec.name);
      event(w, kNormal, "Pulled", spec.name, "Successfully pulled image \"" + spec.image + "\"");
      return true;
    }
    if (spec.pullPolicy == PullPolicy::kAlways) {
      auto present = runtime_.imageStatus(spec.image);
      if (present && *present) {
        log_.warn("pull of ", spec.image, " failed (", ref.status().toString(),
                  "), using the local copy");
        w.pulls.erase(spec.name);
        return true;
      }
    }
    failedAgain(w, w.pulls, spec.name, spec.image, ref.status().message(),
                config_.pullBackoffInitial, config_.pullBackoffMax);
    const RetryBackoff& b = w.pulls[spec.name];
    log_.warn("pod ", w.key, ": pulling ", spec.image, " failed (", ref.status().toString(),
              "), next attempt in ",
              std::chrono::duration_cast<std::chrono::seconds>(b.delay).count(), " s");
    event(w, kWarning, "Failed", spec.name,
          "Failed to pull image \"" + spec.image + "\": " + b.message + "; next attempt in " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(b.delay).count()) +
              " s");
    w.waiting[spec.name] = {"ErrImagePull", b.message};
    return false;
  }

  void createAndStart(Worker& w, const PodSpec& pod, const ContainerSpec& spec,
                      std::vector<Container>& list, const std::string& sandboxId,
                      const PodSandboxConfig& sandboxConfig,
                      const std::map<std::string, std::string>& volumes) {
    if (!imageReady(w, spec)) return;
    // The runtime refused this container for this spec in this sandbox: not before the back-off.
    std::string cause = spec.hash + "/" + sandboxId;
    if (const RetryBackoff* held = heldBack(w, w.refused, spec.name, cause)) {
      w.waiting[spec.name] = {"CreateContainerError",
                              backOffMessage(*held, "container " + spec.name)};
      return;
    }
    auto env = resolveEnv(spec, pod, desired_, config_.nodeName, hostIp_);
    if (!env) {
      w.waiting[spec.name] = {"CreateContainerConfigError", env.status().message()};
      warnOnce(w, spec.name, "Failed", "Error: " + env.status().message());
      if (env.status().code() == core::Code::kNotFound) askForRefs(pod);
      return;
    }
    ContainerConfig cc;
    cc.name = spec.name;
    auto seen = w.attempts.find(spec.name);
    cc.attempt = list.empty() && seen == w.attempts.end() ? 0 : seen->second + 1;
    if (!list.empty()) cc.attempt = std::max(cc.attempt, list[0].attempt + 1);
    cc.image = spec.image;
    cc.command = spec.command;
    cc.args = spec.args;
    cc.workingDir = spec.workingDir;
    cc.env = std::move(env).value();
    auto mounts = containerMounts(pod, spec, volumes);
    auto logs = mounts ? paths_.makeLogDir(pod.uid, spec.name) : mounts.status();
    if (!logs.isOk()) {
      w.waiting[spec.name] = {"CreateContainerConfigError", logs.message()};
      warnOnce(w, spec.name, "Failed", "Error: " + logs.message());
      return;
    }
    cc.mounts = std::move(mounts).value();
    cc.labels = {{kManaged, "true"},
                 {kPodUid, pod.uid},
                 {kPodKey, labelValue(pod.key)},
                 {kContainerName, spec.name},
                 {kContainerHash, spec.hash}};
    cc.annotations = {{kGrace, std::to_string(pod.gracePeriodSeconds)}};
    cc.logPath = spec.name + "/" + std::to_string(cc.attempt) + ".log";
    if (spec.cpuLimitMilli > 0) {
      cc.resources.cpuPeriod = 100000;
      cc.resources.cpuQuota = spec.cpuLimitMilli * 100;
    }
    int64_t request = spec.cpuRequestMilli > 0 ? spec.cpuRequestMilli : spec.cpuLimitMilli;
    if (request > 0) cc.resources.cpuShares = std::max<int64_t>(2, request * 1024 / 1000);
    cc.resources.memoryLimitBytes = spec.memoryLimitBytes;
    cc.security = spec.security;
    if (!cc.security.runAsUser) cc.security.runAsUser = pod.podSecurity.runAsUser;
    if (!cc.security.runAsGroup) cc.security.runAsGroup = pod.podSecurity.runAsGroup;
    if (cc.security.supplementalGroups.empty())
      cc.security.supplementalGroups = pod.podSecurity.supplementalGroups;
    cc.hostNetwork = pod.hostNetwork;
    auto id = runtime_.createContainer(sandboxId, cc, sandboxConfig);
    if (!id) {
      w.waiting[spec.name] = {"CreateContainerError", id.status().message()};
      refusedBy(w, spec.name, cause, "CreateContainer", id.status());
      warnOnce(w, spec.name, "Failed", "Error: CreateContainer: " + id.status().message());
      return;
    }
    w.refused.erase(spec.name);
    event(w, kNormal, "Created", spec.name,
          "Created container " + spec.name + " (attempt " + std::to_string(cc.attempt) + ")");
    stats_.containersCreated++;
    if (createdCounter_) createdCounter_->inc();
    w.attempts[spec.name] = cc.attempt;
    auto started = runtime_.startContainer(*id);
    if (!started.isOk()) {
      w.waiting[spec.name] = {"RunContainerError", started.message()};
      log_.warn("pod ", w.key, ": StartContainer ", spec.name, ": ", started.toString());
      warnOnce(w, spec.name, "Failed", "Error: StartContainer: " + started.message());
    } else {
      w.waiting.erase(spec.name);
      w.warned.erase(spec.name);
      event(w, kNormal, "Started", spec.name, "Started container " + spec.name);
    }
    // The new container becomes the newest of its name for the rest of this pass.
    Container c;
    c.id = *id;
    c.podSandboxId = sandboxId;
    c.name = spec.name;
    c.attempt = cc.attempt;
    c.image = spec.image;
    c.state = started.isOk() ? ContainerState::kRunning : ContainerState::kCreated;
    c.createdAt = std::numeric_limits<UnixNanos>::max();
    c.labels = cc.labels;
    statusCache_.erase(*id);
    list.insert(list.begin(), c);
  }

  PodSandboxConfig makeSandboxConfig(const PodSpec& pod, uint32_t attempt) {
    PodSandboxConfig sc;
    sc.name = pod.name;
    sc.uid = pod.uid;
    sc.podNamespace = pod.podNamespace;
    sc.attempt = attempt;
    sc.hostname = pod.hostNetwork ? "" : (pod.hostname.empty() ? pod.name : pod.hostname);
    sc.logDirectory = logDirectoryOf(pod.uid);
    sc.labels = pod.labels;
    sc.labels[kManaged] = "true";
    sc.labels[kPodUid] = pod.uid;
    sc.labels[kPodKey] = labelValue(pod.key);
    sc.labels[kSandboxHash] = pod.sandboxHash;
    sc.annotations = pod.annotations;
    sc.annotations[kGrace] = std::to_string(pod.gracePeriodSeconds);
    sc.hostNetwork = pod.hostNetwork;
    if (!config_.cgroupParent.empty()) sc.cgroupParent = cgroupOf(pod.uid);
    sc.security = pod.podSecurity;
    return sc;
  }

  std::string cgroupOf(const std::string& uid) const { return config_.cgroupParent + "/pod" + uid; }

  // Empty for a uid that is not one (parsePod refuses such pods).
  std::string logDirectoryOf(const std::string& uid) const {
    auto dir = paths_.logDir(uid);
    return dir ? *dir : std::string();
  }

  // --- removal ---------------------------------------------------------------------------------

  void removeContainer(const Container& c, std::chrono::seconds grace) {
    if (c.state == ContainerState::kRunning || c.state == ContainerState::kUnknown) {
      auto s = runtime_.stopContainer(c.id, grace);
      if (!s.isOk() && s.code() != core::Code::kNotFound)
        log_.warn("StopContainer: ", s.toString());
    }
    auto s = runtime_.removeContainer(c.id);
    if (!s.isOk() && s.code() != core::Code::kNotFound) {
      log_.warn("RemoveContainer: ", s.toString());
      return;
    }
    statusCache_.erase(c.id);
    stats_.containersRemoved++;
  }

  void removeSandbox(const PodSandbox& s, const std::vector<Container>& containers,
                     std::chrono::seconds grace) {
    for (const auto& c : containers) {
      if (c.podSandboxId == s.id) removeContainer(c, grace);
    }
    auto st = runtime_.stopPodSandbox(s.id);
    if (!st.isOk() && st.code() != core::Code::kNotFound) {
      log_.warn("StopPodSandbox: ", st.toString());
      return;
    }
    st = runtime_.removePodSandbox(s.id);
    if (!st.isOk() && st.code() != core::Code::kNotFound) {
      log_.warn("RemovePodSandbox: ", st.toString());
      return;
    }
    stats_.sandboxesRemoved++;
  }

  void removeDeadSandboxes() {
    auto dead = std::move(deadSandboxes_);
    deadSandboxes_.clear();
    for (const auto& [sandbox, containers] : dead) removeSandbox(sandbox, containers, {});
  }

  // A pod no longer desired: its containers stop within the grace period, then everything goes.
  void terminate(std::string key) {
    auto observed = observe({{kManaged, "true"}, {kPodKey, labelValue(key)}});
    if (!observed) return;
    std::set<std::string> uids;
    for (const auto& s : observed->sandboxes) uids.insert(label(s.labels, kPodUid));
    for (const auto& c : observed->containers) uids.insert(label(c.labels, kPodUid));
    {
      // Its volumes may have been made though no sandbox ever ran (one volume failed).
      std::lock_guard<std::mutex> lock(infoMu_);
      auto it = info_.find(key);
      if (it != info_.end() && !it->second.uid.empty()) uids.insert(it->second.uid);
    }
    bool clean = removeUids(*observed, uids);
    if (!clean) return;  // retried on the next pass
    auto it = workers_.find(key);
    if (it != workers_.end()) {
      if (it->second.wakeTimer) loop_.cancel(*it->second.wakeTimer);
      workers_.erase(it);
    }
    {
      std::lock_guard<std::mutex> lock(infoMu_);
      info_.erase(key);
    }
    countPhases();
    log_.info("pod ", key, " removed");
    sink_.podRemoved(key);
  }

  // Removes every sandbox and container of `uids`; true when nothing is left.
  bool removeUids(const Observed& o, const std::set<std::string>& uids) {
    bool clean = true;
    for (const auto& s : o.sandboxes) {
      std::string uid = label(s.labels, kPodUid);
      if (!uids.count(uid)) continue;
      std::chrono::seconds grace{30};
      try {
        grace = std::chrono::seconds(std::stoll(label(s.annotations, kGrace)));
      } catch (const std::exception&) {
      }
      auto before = stats_.sandboxesRemoved;
      removeSandbox(s, o.containers, grace);
      if (stats_.sandboxesRemoved == before) clean = false;
    }
    for (const auto& c : o.containers) {
      if (!uids.count(label(c.labels, kPodUid))) continue;
      bool inSandbox = std::any_of(o.sandboxes.begin(), o.sandboxes.end(),
                                   [&](const auto& s) { return s.id == c.podSandboxId; });
      if (!inSandbox) removeContainer(c, std::chrono::seconds(30));
    }
    for (const auto& uid : uids) {
      // The uid comes from a runtime label an older agent may have written from a bad pod: it
      // names a cgroup and a directory only when it is a uid.
      if (auto valid = validation::uid("the pod-uid label", uid); !valid.isOk()) {
        if (!uid.empty()) log_.warn("not removing files of a pod: ", valid.message());
        continue;
      }
      if (!config_.cgroupParent.empty()) removeCgroup(cgroupOf(uid));
      if (auto s = paths_.removePod(uid); !s.isOk())
        log_.warn("removing the directory of pod ", uid, ": ", s.toString());
    }
    return clean;
  }

  // Sandboxes and containers with our labels whose pod is not desired: garbage.
  void collectOrphans(const Observed& o, const std::set<std::string>& desiredUids) {
    std::set<std::string> orphans, orphanKeys;
    for (const auto& s : o.sandboxes) {
      std::string uid = label(s.labels, kPodUid);
      if (!desiredUids.count(uid) && !pendingKey(label(s.labels, kPodKey))) {
        orphans.insert(uid);
        orphanKeys.insert(label(s.labels, kPodKey));
      }
    }
    for (const auto& c : o.containers) {
      std::string uid = label(c.labels, kPodUid);
      if (!desiredUids.count(uid) && !pendingKey(label(c.labels, kPodKey))) {
        orphans.insert(uid);
        orphanKeys.insert(label(c.labels, kPodKey));
      }
    }
    if (orphans.empty()) return;
    if (!desired_.complete()) {
      // Ask the cloud whether it still wants them: its answer lands in the store (the pod is
      // named again and adopted) or settles that it does not.
      for (const auto& l : orphanKeys) {
        if (auto key = keyFromLabel(l)) askMissing(*key);
      }
      // After a store recovery the store is empty until the cloud resends the desired set: these
      // pods are most likely still wanted, and removing them would lose the site's work.
      if (!holdingOrphans_) {
        log_.warn(
            "the desired set is incomplete (the store was recovered and the cloud has not "
            "resent it yet): keeping ",
            orphans.size(), orphans.size() == 1 ? " pod" : " pods",
            " that the store does not name until it is complete");
      }
      holdingOrphans_ = true;
      return;
    }
    if (holdingOrphans_) log_.info("the desired set is complete again");
    holdingOrphans_ = false;
    log_.info("collecting ", orphans.size(), " pods nobody wants");
    removeUids(o, orphans);
  }

  // "<ns>.pod.<name>" (labelValue) back to "<ns>/pod/<name>"; namespaces hold no dots.
  static std::optional<std::string> keyFromLabel(const std::string& l) {
    auto dot = l.find('.');
    if (dot == std::string::npos || dot == 0 || l.compare(dot, 5, ".pod.") != 0 ||
        l.size() <= dot + 5)
      return std::nullopt;
    return l.substr(0, dot) + "/pod/" + l.substr(dot + 5);
  }

  // The configmaps and secrets `pod` needs that the store lacks: ask the cloud for them.
  void askForRefs(const PodSpec& pod) {
    for (const auto& key : missingRefs(pod, desired_)) askMissing(key);
  }

  // DesiredPods::fetchMissing, at most once per key per fetchMissingInterval.
  void askMissing(const std::string& key) {
    auto now = loop_.clock().now();
    auto it = asked_.find(key);
    if (it != asked_.end() && now - it->second < config_.fetchMissingInterval) return;
    asked_[key] = now;
    log_.info("asking the cloud for ", key, ": the store does not hold it");
    desired_.fetchMissing(key);
  }

  // A key whose desired JSON is invalid keeps what runs (see applyDesired).
  bool pendingKey(const std::string& labelKey) {
    for (const auto& [k, w] : workers_) {
      if (!w.invalid.empty() && labelValue(k) == labelKey) return true;
    }
    return false;
  }

  void pruneStatusCache(const Observed& o) {
    std::set<std::string> ids;
    for (const auto& c : o.containers) ids.insert(c.id);
    for (auto it = statusCache_.begin(); it != statusCache_.end();) {
      it = ids.count(it->first) ? std::next(it) : statusCache_.erase(it);
    }
  }

  // --- reporting -------------------------------------------------------------------------------

  void copyStats() {
    std::lock_guard<std::mutex> lock(statsMu_);
    statsCopy_ = stats_;
  }

  void publish(Worker& w, std::string json) {
    copyStats();
    if (json == w.lastStatus) return;
    w.lastStatus = std::move(json);
    auto parsed = nlohmann::json::parse(w.lastStatus, nullptr, false);
    std::string phase = parsed.is_object() ? parsed.value("phase", "Unknown") : "Unknown";
    if (phase != w.phase) {
      w.phase = phase;
      countPhases();
    }
    sink_.podStatus(w.key, w.lastStatus);
  }

  // outpost_pods{phase}: every pod with a published status, by its phase.
  void countPhases() {
    if (phaseGauges_.empty()) return;
    std::vector<int> counts(std::size(kPhases), 0);
    for (const auto& [key, w] : workers_) {
      if (w.phase.empty()) continue;
      size_t i = 0;
      while (i < std::size(kPhases) && w.phase != kPhases[i]) ++i;
      counts[i < std::size(kPhases) ? i : std::size(kPhases) - 1]++;  // else Unknown
    }
    for (size_t i = 0; i < counts.size(); ++i) phaseGauges_[i]->set(counts[i]);
  }

  // --- events ----------------------------------------------------------------------------------

  // Records an event in the pod's ring (a repeat of the newest one is counted instead) and counts
  // it in outpost_deploy_actions_total / outpost_deploy_errors_total.
  void event(const Worker& w, const char* type, const std::string& reason,
             const std::string& container, const std::string& message) {
    auto now = loop_.clock().wallNow();
    {
      std::lock_guard<std::mutex> lock(infoMu_);
      auto& events = info_[w.key].events;
      if (!events.empty() && events.back().type == type && events.back().reason == reason &&
          events.back().container == container && events.back().message == message) {
        events.back().count++;
        events.back().last = now;
      } else {
        events.push_back({now, now, type, reason, container, message, 1});
        if (events.size() > PodRuntimeInfo::kMaxPodEvents) events.erase(events.begin());
      }
    }
    if (metrics_) {
      if (std::string_view(type) == kWarning) {
        metrics_
            ->counter("outpost_deploy_errors_total",
                      "Failures the reconciler met, by reason (pod events of type Warning)",
                      {{"reason", reason}})
            .inc();
      } else {
        metrics_
            ->counter("outpost_deploy_actions_total",
                      "Actions the reconciler took, by kind (pod events of type Normal)",
                      {{"action", reason}})
            .inc();
      }
    }
  }

  // A warning that a pass would repeat while the cause lasts: recorded when it first appears. One
  // slot per container (or `slot` for the pod's own steps) remembers the last one, until the step
  // succeeds and erases it.
  // True when it was recorded (it is new).
  bool warnOnce(Worker& w, const std::string& container, const std::string& reason,
                const std::string& message, const std::string& slot = "") {
    std::string what = reason + "\n" + message;
    auto& last = w.warned[slot.empty() ? container : slot];
    if (last == what) return false;
    last = what;
    event(w, kWarning, reason, container, message);
    return true;
  }

  // An exited container, once per container.
  void noteExit(Worker& w, const std::string& name, const ContainerStatus& st) {
    auto& noted = w.exitNoted[name];
    if (noted == st.container.id) return;
    noted = st.container.id;
    std::string text = "Container " + name + " exited with code " + std::to_string(st.exitCode);
    if (!st.reason.empty()) text += " (" + st.reason + ")";
    if (st.exitCode == 0) {
      event(w, kNormal, "Completed", name, text);
    } else {
      event(w, kWarning, "Exited", name, text);
    }
  }

  // Sends the node status when it changed, or always for a heartbeat.
  void reportNode(bool heartbeat = false) {
    if (!node_.runtimeReady && node_.runtime.runtimeName.empty()) {
      auto v = runtime_.version();
      if (v) {
        node_.runtime = *v;
        node_.runtimeReady = true;
        node_.runtimeMessage.clear();
      } else {
        node_.runtimeMessage = "container runtime: " + v.status().toString();
      }
    }
    auto json = nodeStatusJson(node_);
    if (json == lastNode_ && !heartbeat) return;
    lastNode_ = json;
    sink_.nodeStatus(nodeStatusJson(node_, rfc3339(loop_.clock().wallNow())));
  }

  core::EventLoop& loop_;
  Runtime& runtime_;
  DesiredPods& desired_;
  std::map<std::string, core::MonoTime> asked_;  // fetchMissing: when each key was last asked
  StatusSink& sink_;
  ReconcilerConfig config_;
  core::Logger log_;
  HostPaths paths_;  // of config_.stateDir
  core::Counter* createdCounter_ = nullptr;
  core::Histogram* syncHistogram_ = nullptr;
  core::MetricsRegistry* metrics_ = nullptr;
  std::vector<core::Gauge*> phaseGauges_;  // by kPhases
  // podInfo(): written on the loop, read from any thread.
  mutable std::mutex infoMu_;
  std::map<std::string, PodRuntimeInfo> info_;
  std::string hostIp_;
  NodeFacts node_;
  std::string lastNode_;
  std::map<std::string, Worker> workers_;
  std::map<std::string, ContainerStatus> statusCache_;
  bool holdingOrphans_ = false;  // orphans kept because the desired set is incomplete (logged once)
  // Dead sandboxes replaced during a pass, with their pod's containers: removed at its end.
  std::vector<std::pair<PodSandbox, std::vector<Container>>> deadSandboxes_;
  std::vector<core::TimerId> timers_;
  ReconcilerStats stats_;
  std::mutex statsMu_;
  ReconcilerStats statsCopy_;  // stats_ as of the end of the last pass, for other threads
  std::atomic<bool> stopped_{false};
};

Reconciler::Reconciler(core::EventLoop& loop, Runtime& runtime, DesiredPods& desired,
                       StatusSink& sink, ReconcilerConfig config, core::Logger log,
                       core::MetricsRegistry* metrics)
    : impl_(std::make_shared<Impl>(loop, runtime, desired, sink, std::move(config), std::move(log),
                                   metrics)) {}

Reconciler::~Reconciler() { impl_->stop(); }

void Reconciler::start(std::function<void()> onColdBoot) { impl_->start(std::move(onColdBoot)); }
void Reconciler::stop() { impl_->stop(); }
void Reconciler::onDesiredChanged(std::vector<std::string> keys) {
  impl_->onDesiredChanged(std::move(keys));
}
void Reconciler::syncAll() { impl_->syncAll(); }
ReconcilerStats Reconciler::stats() { return impl_->stats(); }
std::optional<PodRuntimeInfo> Reconciler::podInfo(const std::string& key) const {
  return impl_->podInfo(key);
}

}  // namespace outpost::deploy
