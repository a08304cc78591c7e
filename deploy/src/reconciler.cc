// The pod reconciler: one worker per pod on deploy's loop, level-triggered.
//
// This file holds the loop's side: the timers, reading the desired pods, full and single passes,
// terminating pods no longer desired, publishing pod and node status. A pass over one pod is the
// pod worker's (pod_worker.h); images, garbage collection and events have parts of their own.

#include "outpost/deploy/reconciler.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "garbage_collector.h"
#include "host_paths.h"
#include "image_prepull.h"
#include "image_puller.h"
#include "labels.h"
#include "node_reporter.h"
#include "node_status.h"
#include "pod_events.h"
#include "pod_spec.h"
#include "pod_status.h"
#include "pod_stopper.h"
#include "pod_worker.h"
#include "update_gate.h"
#include "volumes.h"

namespace outpost::deploy {
namespace {

// Pod phases, as outpost_pods counts them; anything else counts as the last.
constexpr const char* kPhases[] = {"Pending", "Running", "Succeeded", "Failed", "Unknown"};

}  // namespace

class Reconciler::Impl : public std::enable_shared_from_this<Reconciler::Impl> {
 public:
  Impl(core::EventLoop& loop, Runtime& runtime, DesiredPods& desired, StatusSink& sink,
       ReconcilerConfig config, core::Logger log, core::MetricsRegistry* metrics, LocalState* local)
      : loop_(loop),
        runtime_(runtime),
        desired_(desired),
        sink_(sink),
        config_(std::move(config)),
        log_(std::move(log)),
        paths_(config_.stateDir),
        events_(loop_.clock(), metrics),
        images_(runtime_, events_, log_, {config_.pullBackoffInitial, config_.pullBackoffMax},
                stats_.imagesPulled),
        prepulls_(runtime_, images_, events_, sink_, log_),
        gc_(runtime_, paths_, config_.cgroupParent, log_, stats_, statuses_),
        ctx_{.runtime = runtime_,
             .desired = desired_,
             .config = config_,
             .clock = loop_.clock(),
             .log = log_,
             .paths = paths_,
             .events = events_,
             .images = images_,
             .gc = gc_,
             .statuses = statuses_,
             .stats = stats_},
        local_(local),
        gate_(config_.maintenanceWindows, log_),
        hooks_{loop_.clock(), [this](PodState& w, const auto& rec) { applyNow(w, rec); },
               [this](PodState& w, core::MonoTime at) { wakeAt(w, at); }} {
    if (metrics) {
      ctx_.createdCounter = &metrics->counter("outpost_deploy_containers_created_total",
                                              "Containers the reconciler created");
      syncHistogram_ = &metrics->histogram("outpost_deploy_sync_seconds",
                                           "Duration of a reconcile pass over all pods",
                                           {0.001, 0.01, 0.1, 1, 10});
      for (const char* phase : kPhases) {
        phaseGauges_.push_back(
            &metrics->gauge("outpost_pods", "Pods on the node by phase", {{"phase", phase}}));
      }
    }
    ctx_.hostIp = config_.nodeAddress;
    node_.emplace(runtime_, sink_, loop_.clock(), log_, config_, ctx_.hostIp);
  }

  // Set after construction: they hold a weak reference to this.
  void wire(TokenSource* tokens) {
    std::weak_ptr<Impl> weak = shared_from_this();
    tokens_ = std::make_shared<ServiceAccountTokens>(
        tokens, loop_, log_, [weak](const std::string& key, core::MonoTime at) {
          auto self = weak.lock();
          if (!self) return;
          auto it = self->workers_.find(key);
          if (it != self->workers_.end()) self->wakeAt(it->second, at);
        });
    ctx_.tokens = tokens_.get();
    ctx_.wakeAt = [weak](PodState& w, core::MonoTime at) {
      if (auto self = weak.lock()) self->wakeAt(w, at);
    };
    ctx_.askForRefs = [weak](const PodSpec& pod) {
      if (auto self = weak.lock()) self->askForRefs(pod);
    };
  }

  void start(std::function<void()> onColdBoot) {
    auto self = shared_from_this();
    loop_.post([self, onColdBoot = std::move(onColdBoot)] {
      if (self->stopped_) return;
      self->gate_.load(self->local_);
      self->loadAllDesired();
      self->syncAllNow();
      self->node_->report();
      self->log_.info("cold boot pass done: ", self->workers_.size(), " desired pods");
      // The timers count from the end of the pass, not from whatever the announcement lets run.
      self->startTimers();
      if (onColdBoot) onColdBoot();
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
      bool prepulls = false;
      for (const auto& k : keys) {
        if (k.find("/pod/") != std::string::npos) {
          pods.insert(k);
        } else if (k.find("/imageprepull/") != std::string::npos) {
          self->prepulls_.apply(k, self->desired_.getPod(k));
          prepulls = true;
        } else {
          refs = true;  // a configmap or secret: re-project every pod that uses it
        }
      }
      for (const auto& k : pods) self->loadDesired(k);
      if (refs) {
        for (const auto& [k, w] : self->workers_) {
          if (w.spec && usesRef(*w.spec, keys)) pods.insert(k);
        }
      }
      for (const auto& k : pods) self->syncOne(k);
      if (prepulls) self->prepulls_.run(self->loop_.clock().now());
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

  std::optional<PodRuntimeInfo> podInfo(const std::string& key) const { return events_.info(key); }
  bool runtimeReady() const { return runtimeReady_; }

  // --- on-site holds (update_gate.h) ---
  // Runs `fn` on the loop and waits for it (it captures by value: after a timeout it still runs).
  core::Status onLoop(std::function<void()> fn) {
    if (loop_.runSync(std::move(fn), std::chrono::seconds(10))) return core::okStatus();
    return core::unavailable("deploy did not answer within 10 s (a long image pull?)");
  }
  core::Status hold(std::vector<std::string> pods, std::optional<core::WallTime> until) {
    auto self = shared_from_this();
    return onLoop([self, pods, until] { self->gate_.hold(pods, until); });
  }
  core::Status release(std::vector<std::string> pods) {
    auto self = shared_from_this();
    return onLoop([self, pods] {
      std::map<std::string, std::string> waiting;
      for (const auto& [k, w] : self->workers_)
        if (w.pending) waiting[k] = w.pending->record ? w.pending->version : "";
      self->gate_.release(pods, waiting);
      for (const auto& [k, v] : waiting) self->syncOne(k);
    });
  }
  std::pair<std::vector<PodHold>, std::vector<HeldUpdate>> holds() {
    auto self = shared_from_this();
    auto out = std::make_shared<std::pair<std::vector<PodHold>, std::vector<HeldUpdate>>>();
    auto st = onLoop([self, out] {
      out->first = self->gate_.holds(self->loop_.clock().wallNow());
      for (const auto& [k, w] : self->workers_)
        if (w.held) out->second.push_back(*w.held);
    });
    if (!st.isOk()) log_.warn("reading the holds: ", st.message());
    return *out;
  }

 private:
  void startTimers() {
    std::weak_ptr<Impl> weak = shared_from_this();
    timers_.push_back(loop_.runEvery(config_.pollInterval, [weak] {
      if (auto s = weak.lock()) s->syncAllNow();
    }));
    timers_.push_back(loop_.runEvery(config_.resyncInterval, [weak] {
      if (auto s = weak.lock(); s && !s->stopped_) {
        s->loadAllDesired();
        s->syncAllNow();
      }
    }));
    timers_.push_back(loop_.runEvery(config_.nodeStatusInterval, [weak] {
      if (auto s = weak.lock(); s && !s->stopped_) s->node_->report(/*heartbeat=*/true);
    }));
  }

  // --- desired state ---------------------------------------------------------------------------

  void loadAllDesired() {
    std::set<std::string> seen;
    for (auto& rec : desired_.listPods()) {
      seen.insert(rec.key);
      std::string key = rec.key;
      applyDesired(key, std::move(rec));
    }
    for (auto& [key, w] : workers_) {
      if (!seen.count(key) && (w.spec || !w.invalid.empty())) applyDesired(key, std::nullopt);
    }
    prepulls_.applyAll(desired_.listObjects(kImagePrePullType));
  }

  void loadDesired(const std::string& key) { applyDesired(key, desired_.getPod(key)); }

  void applyDesired(const std::string& key, const std::optional<PodRecord>& rec) {
    auto& w = workers_[key];
    w.key = key;
    if (gate_.admit(w, rec, hooks_)) return;  // a change of a running pod that may wait
    applyNow(w, rec);
  }

  void applyNow(PodState& w, const std::optional<PodRecord>& rec) {
    const std::string& key = w.key;
    if (!rec) {
      w.spec.reset();
      w.invalid.clear();
      return;
    }
    auto parsed = parsePod(key, rec->json, config_.defaultNamespace);
    w.specJson = rec->json;
    w.version = !rec->version.empty() ? rec->version
                : parsed              ? parsed->resourceVersion
                                      : metadataVersion(rec->json);
    if (!parsed) {
      // Logged when it appears or changes, not at every re-read; the event counts the re-reads.
      if (w.invalid != parsed.status().message()) {
        w.invalid = parsed.status().message();
        log_.warn("pod ", key, " cannot run: ", w.invalid);
      }
      events_.record(key, kWarning, "FailedValidation", "",
                     "The desired pod cannot run: " + w.invalid);
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

  static bool usesRef(const PodSpec& pod, const std::vector<std::string>& keys) {
    auto refs = refsOf(pod);
    return std::any_of(keys.begin(), keys.end(), [&](const auto& k) { return refs.count(k); });
  }

  // --- observing -------------------------------------------------------------------------------

  std::optional<Observed> observe(const Labels& selector) {
    Observed o;
    auto sandboxes = runtime_.listPodSandbox(SandboxFilter{"", std::nullopt, selector});
    if (!sandboxes) {
      runtimeReady_ = false;
      node_->runtimeDown(sandboxes.status());
      return std::nullopt;
    }
    auto containers = runtime_.listContainers(ContainerFilter{"", "", std::nullopt, selector});
    if (!containers) {
      runtimeReady_ = false;
      node_->runtimeDown(containers.status());
      return std::nullopt;
    }
    runtimeReady_ = true;
    node_->runtimeUp();
    o.sandboxes = std::move(sandboxes).value();
    o.containers = std::move(containers).value();
    return o;
  }

  // --- passes ----------------------------------------------------------------------------------

  void syncAllNow() {
    if (stopped_) return;
    auto started = loop_.clock().now();
    auto observed = observe({{kManaged, "true"}});
    if (!observed) return;
    std::vector<std::string> keys;
    for (const auto& [key, w] : workers_) keys.push_back(key);
    for (const auto& key : keys) {
      auto it = workers_.find(key);
      if (it != workers_.end()) syncGuarded(it->second, *observed);
    }
    gc_.removeDeferred();
    collectOrphans(*observed);
    statuses_.prune(*observed);
    prepulls_.run(loop_.clock().now());
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
    auto observed = observe(selector);
    if (!observed) return;
    bool deleting = !it->second.spec;
    syncGuarded(it->second, *observed);  // may erase the worker
    gc_.removeDeferred();
    // Everything of the old uids under this key goes too.
    if (deleting) collectOrphans(*observed);
    copyStats();
  }

  // One pod's pass; whatever it throws stays that pod's problem, reported on it, and the pass goes
  // on with the other pods.
  void syncGuarded(PodState& w, const Observed& all) {
    std::string key = w.key;
    try {
      syncWorker(w, all);
      if (workers_.count(key)) events_.clearWarning(key, "#sync");
    } catch (const std::exception& e) {
      auto it = workers_.find(key);  // syncWorker may have erased it
      if (it == workers_.end()) {
        log_.warn("pod ", key, ": ", e.what());
        return;
      }
      std::string why = std::string("the pod cannot be synced: ") + e.what();
      if (events_.warnOnce(key, "", "FailedSync", why, "#sync")) log_.warn("pod ", key, ": ", why);
      publish(it->second, invalidStatus(it->second, why, loop_.clock().wallNow(),
                                        it->second.transitions, "SyncError"));
    }
  }

  void syncWorker(PodState& w, const Observed& all) {
    stats_.syncs++;
    if (w.pending) gate_.recheck(w, hooks_);
    if (!w.invalid.empty()) {
      // Also for a pod that never had a valid spec: its status says why it does not run.
      publish(w, invalidStatus(w, w.invalid, loop_.clock().wallNow(), w.transitions));
      return;
    }
    if (!w.spec) {
      terminate(w.key);
      return;
    }
    events_.setPod(w.key, w.spec->uid, logDirectoryOf(paths_, w.spec->uid));
    if (w.spec->deleting) return terminating(w, all);
    publish(w, syncPod(ctx_, w, all));
  }

  void wakeAt(PodState& w, core::MonoTime at) {
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

  // --- removal ---------------------------------------------------------------------------------

  // A pod being deleted (metadata.deletionTimestamp): its containers stop within its grace period
  // (off the loop, beside other pods' stops) and nothing of it starts again; once they are all
  // down and that is reported, the cloud is told it may delete the pod. What is left goes when the
  // cloud's delete arrives (terminate).
  void terminating(PodState& w, const Observed& all) {
    const PodSpec& pod = *w.spec;
    auto live = liveContainers(all, pod.uid);
    const bool down = live.empty();
    const std::string stopKey = "uid:" + pod.uid;
    bool stopping = stopper_.stopping(stopKey);
    if (!down && !stopping) {
      log_.info("pod ", w.key, " is being deleted: stopping ", live.size(),
                live.size() == 1 ? " container" : " containers", " within ", pod.gracePeriodSeconds,
                " s");
      events_.record(w.key, kNormal, "Killing", "",
                     "Stopping the pod's containers: the pod is being deleted");
      stopOffLoop(stopKey, std::move(live), std::chrono::seconds(pod.gracePeriodSeconds), w.key);
      stopping = true;
    } else if (down && !stopping) {
      for (const auto& s : all.sandboxes) {
        if (label(s.labels, kPodUid) != pod.uid || s.state != SandboxState::kReady) continue;
        if (auto st = runtime_.stopPodSandbox(s.id); !st.isOk())
          log_.warn("StopPodSandbox: ", st.toString());
      }
    }
    publish(w, observedPodStatus(ctx_, w, all));
    if (down && !stopping && w.terminatedUid != pod.uid) {
      w.terminatedUid = pod.uid;
      log_.info("pod ", w.key, " stopped for its deletion: asking the cloud to delete it");
      sink_.podTerminated(w.key, pod.uid);
    }
  }

  // Starts stopping `ids` (under `stopKey`, "uid:<pod uid>") on the stopper's threads; when they
  // are down the pod at `key` is looked at again on the loop (every pod, for an orphan: no key).
  void stopOffLoop(const std::string& stopKey, std::vector<std::string> ids,
                   std::chrono::seconds grace, const std::string& key) {
    std::weak_ptr<Impl> weak = shared_from_this();
    // The stop thread only posts: the loop outlives the reconciler, whose stopper joins it.
    core::EventLoop* loop = &loop_;
    stopper_.stop(stopKey, std::move(ids), grace, [weak, loop, key] {
      loop->post([weak, key] {
        auto self = weak.lock();
        if (!self || self->stopped_) return;
        if (key.empty()) return self->syncAllNow();
        self->syncOne(key);
      });
    });
  }

  // The live containers of `uids` in `o` start stopping (each pod within the grace period its
  // sandbox names). True while any of them is still stopping: what is left of them waits.
  bool stopLive(const Observed& o, const std::set<std::string>& uids, const std::string& key) {
    bool busy = false;
    for (const auto& uid : uids) {
      const std::string stopKey = "uid:" + uid;
      if (stopper_.stopping(stopKey)) {
        busy = true;
        continue;
      }
      auto live = liveContainers(o, uid);
      if (live.empty()) continue;
      std::optional<std::chrono::seconds> grace;
      for (const auto& s : o.sandboxes) {
        if (label(s.labels, kPodUid) == uid)
          grace = std::max(grace.value_or(std::chrono::seconds(0)), graceOf(s));
      }
      log_.info("pod ", key.empty() ? uid : key, ": stopping ", live.size(),
                live.size() == 1 ? " container" : " containers");
      stopOffLoop(stopKey, std::move(live), grace.value_or(std::chrono::seconds(30)), key);
      busy = true;
    }
    return busy;
  }

  // A pod no longer desired: its containers stop within the grace period, then everything goes.
  void terminate(std::string key) {
    auto observed = observe({{kManaged, "true"}, {kPodKey, labelValue(key)}});
    if (!observed) return;
    std::set<std::string> uids;
    for (const auto& s : observed->sandboxes) uids.insert(label(s.labels, kPodUid));
    for (const auto& c : observed->containers) uids.insert(label(c.labels, kPodUid));
    // Running containers stop first, off the loop and beside other pods' (each within its grace
    // period); the pod comes back here when they are down.
    if (stopLive(*observed, uids, key)) return;
    // Its volumes may have been made though no sandbox ever ran (one volume failed).
    if (auto uid = events_.uidOf(key); !uid.empty()) uids.insert(uid);
    if (!gc_.removeUids(*observed, uids)) return;  // retried on the next pass
    for (const auto& uid : uids) tokens_->forget(uid);
    auto it = workers_.find(key);
    if (it != workers_.end()) {
      if (it->second.wakeTimer) loop_.cancel(*it->second.wakeTimer);
      workers_.erase(it);
    }
    events_.forget(key);
    countPhases();
    log_.info("pod ", key, " removed");
    sink_.podRemoved(key);
  }

  // Sandboxes and containers with our labels whose pod is not desired: garbage.
  void collectOrphans(const Observed& o) {
    std::set<std::string> uids;
    for (const auto& [k, w] : workers_) {
      if (w.spec) uids.insert(w.spec->uid);
    }
    auto orphans = findOrphans(o, uids, [this](const std::string& l) { return pendingKey(l); });
    if (desired_.complete()) {
      // Their running containers stop off the loop first; they are collected once down.
      std::set<std::string> down;
      for (const auto& uid : orphans.uids) {
        if (!stopLive(o, {uid}, "")) down.insert(uid);
      }
      orphans.uids = std::move(down);
    }
    gc_.collectOrphans(o, orphans, desired_.complete(),
                       [this](const std::string& key) { askMissing(key); });
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

  // --- reporting -------------------------------------------------------------------------------

  void copyStats() {
    std::lock_guard<std::mutex> lock(statsMu_);
    statsCopy_ = stats_;
  }

  void publish(PodState& w, std::string json) {
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

  core::EventLoop& loop_;
  Runtime& runtime_;
  DesiredPods& desired_;
  std::map<std::string, core::MonoTime> asked_;  // fetchMissing: when each key was last asked
  StatusSink& sink_;
  ReconcilerConfig config_;
  core::Logger log_;
  HostPaths paths_;  // of config_.stateDir
  ReconcilerStats stats_;
  StatusCache statuses_;
  PodEvents events_;
  ImagePuller images_;
  ImagePrePulls prepulls_;
  GarbageCollector gc_;
  WorkerContext ctx_;
  LocalState* local_;
  UpdateGate gate_;
  UpdateGate::Hooks hooks_;
  std::shared_ptr<ServiceAccountTokens> tokens_;
  core::Histogram* syncHistogram_ = nullptr;
  std::vector<core::Gauge*> phaseGauges_;  // by kPhases
  std::optional<NodeReporter> node_;       // made once ctx_ knows the host's address
  std::map<std::string, PodState> workers_;
  std::vector<core::TimerId> timers_;
  std::mutex statsMu_;
  ReconcilerStats statsCopy_;  // stats_ as of the end of the last pass, for other threads
  std::atomic<bool> stopped_{false};
  std::atomic<bool> runtimeReady_{false};  // the last listing's answer (runtimeReady())
  // Last: its destructor waits for the stops in flight, which use the runtime and post to loop_.
  PodStopper stopper_{runtime_, log_};
};

Reconciler::Reconciler(core::EventLoop& loop, Runtime& runtime, DesiredPods& desired,
                       StatusSink& sink, ReconcilerConfig config, core::Logger log,
                       core::MetricsRegistry* metrics, LocalState* local, TokenSource* tokens)
    : impl_(std::make_shared<Impl>(loop, runtime, desired, sink, std::move(config), std::move(log),
                                   metrics, local)) {
  impl_->wire(tokens);
}

Reconciler::~Reconciler() { impl_->stop(); }

void Reconciler::start(std::function<void()> onColdBoot) { impl_->start(std::move(onColdBoot)); }
void Reconciler::stop() { impl_->stop(); }
void Reconciler::onDesiredChanged(std::vector<std::string> keys) {
  impl_->onDesiredChanged(std::move(keys));
}
void Reconciler::syncAll() { impl_->syncAll(); }
ReconcilerStats Reconciler::stats() { return impl_->stats(); }
bool Reconciler::runtimeReady() const { return impl_->runtimeReady(); }
core::Status Reconciler::hold(std::vector<std::string> pods, std::optional<core::WallTime> until) {
  return impl_->hold(std::move(pods), until);
}
core::Status Reconciler::release(std::vector<std::string> pods) {
  return impl_->release(std::move(pods));
}
std::pair<std::vector<PodHold>, std::vector<HeldUpdate>> Reconciler::holds() {
  return impl_->holds();
}
std::optional<PodRuntimeInfo> Reconciler::podInfo(const std::string& key) const {
  return impl_->podInfo(key);
}

}  // namespace outpost::deploy
