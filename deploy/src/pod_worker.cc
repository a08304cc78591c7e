#include "pod_worker.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "container_config.h"
#include "labels.h"
#include "volumes.h"

namespace outpost::deploy {
namespace {

using Volumes = std::map<std::string, std::string>;

long long seconds(core::Duration d) {
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

// One pass over one pod. Its members are what the steps of the pass share.
class PodPass {
 public:
  PodPass(WorkerContext& ctx, PodState& w)
      : ctx_(ctx), w_(w), pod_(*w.spec), grace_(pod_.gracePeriodSeconds) {}

  std::string run(const Observed& all);
  std::string observeOnly(const Observed& all);

 private:
  // The pod's sandboxes and containers of `all`; the highest attempt of each container name.
  void select(const Observed& all);
  // 1. The sandbox: the newest ready one with the current sandbox hash; others go.
  void chooseSandbox();
  // 2. Volumes (re-projected every pass: a configmap change shows up in the files).
  void prepare();
  void ensureSandbox();
  std::optional<std::string> runSandbox(const std::string& cause);
  // Containers of the current sandbox by name, newest first; those nobody wants go.
  void groupContainers();
  // 3. Init containers, in order, each to completion; then 4. the containers.
  void stepAll(PodView& view);
  bool stepInit(const ContainerSpec& spec, ContainerView& v);
  void stepContainer(const ContainerSpec& spec);
  void restartWithBackoff(const ContainerSpec& spec, const std::optional<ContainerStatus>& exited);
  void probe(const ContainerSpec& spec, const Container& c);
  void startCreated(const ContainerSpec& spec, const Container& c);
  void createAndStart(const ContainerSpec& spec);
  std::optional<ContainerConfig> configOf(const ContainerSpec& spec);
  void started(const ContainerSpec& spec, const ContainerConfig& cc, const std::string& id);
  // 5. Exited containers beyond the newest two of each name go.
  void removeOldExited();
  ContainerView viewOf(const ContainerSpec& spec);
  void refusedBy(const std::string& slot, const std::string& cause, const char* call,
                 const core::Status& s);
  void waitAll(const std::string& reason, const std::string& message);
  bool ready() const { return !sandboxId_.empty() && volumes_.isOk(); }

  WorkerContext& ctx_;
  PodState& w_;
  const PodSpec& pod_;
  const std::chrono::seconds grace_;
  std::vector<PodSandbox> sandboxes_;
  std::vector<Container> containers_;
  const PodSandbox* current_ = nullptr;
  uint32_t sandboxAttempt_ = 0;
  PodSandboxConfig sandboxConfig_;
  std::string sandboxId_;
  UnixNanos sandboxCreated_ = 0;
  core::Result<Volumes> volumes_ = Volumes{};
  std::map<std::string, std::vector<Container>> byName_;
};

std::string PodPass::run(const Observed& all) {
  select(all);
  chooseSandbox();
  prepare();
  if (!current_ && volumes_) ensureSandbox();
  groupContainers();
  PodView view;
  view.spec = &pod_;
  view.sandboxReady = !sandboxId_.empty();
  view.sandboxCreatedAt = sandboxCreated_;
  view.hostIp = ctx_.hostIp;
  if (pod_.hostNetwork) view.podIp = ctx_.hostIp;
  stepAll(view);
  removeOldExited();
  if (!sandboxId_.empty() && view.podIp.empty()) {
    auto st = ctx_.runtime.podSandboxStatus(sandboxId_);
    if (st) view.podIp = st->ip;
  }
  return podStatusJson(view, w_.transitions, ctx_.clock.wallNow());
}

std::string PodPass::observeOnly(const Observed& all) {
  select(all);
  std::sort(sandboxes_.begin(), sandboxes_.end(),
            [](const auto& a, const auto& b) { return a.createdAt > b.createdAt; });
  if (!sandboxes_.empty()) {
    current_ = &sandboxes_[0];
    sandboxId_ = current_->id;
    sandboxCreated_ = current_->createdAt;
  }
  for (const auto& c : containers_) {
    if (!sandboxId_.empty() && c.podSandboxId == sandboxId_)
      byName_[label(c.labels, kContainerName)].push_back(c);
  }
  for (auto& [name, list] : byName_) {
    std::sort(list.begin(), list.end(),
              [](const auto& a, const auto& b) { return a.createdAt > b.createdAt; });
  }
  w_.waiting.clear();
  PodView view;
  view.spec = &pod_;
  view.sandboxReady = current_ && current_->state == SandboxState::kReady;
  view.sandboxCreatedAt = sandboxCreated_;
  view.hostIp = ctx_.hostIp;
  if (pod_.hostNetwork) view.podIp = ctx_.hostIp;
  for (const auto& spec : pod_.initContainers) view.init.push_back(viewOf(spec));
  for (const auto& spec : pod_.containers) view.containers.push_back(viewOf(spec));
  return podStatusJson(view, w_.transitions, ctx_.clock.wallNow());
}

void PodPass::select(const Observed& all) {
  for (const auto& s : all.sandboxes) {
    if (label(s.labels, kPodUid) == pod_.uid) sandboxes_.push_back(s);
  }
  for (const auto& c : all.containers) {
    if (label(c.labels, kPodUid) == pod_.uid) containers_.push_back(c);
  }
  for (const auto& c : containers_) {
    auto& a = w_.attempts[label(c.labels, kContainerName)];
    a = std::max(a, c.attempt);
  }
}

void PodPass::chooseSandbox() {
  std::sort(sandboxes_.begin(), sandboxes_.end(),
            [](const auto& a, const auto& b) { return a.createdAt > b.createdAt; });
  for (const auto& s : sandboxes_) {
    sandboxAttempt_ = std::max(sandboxAttempt_, s.attempt + 1);
    if (!current_ && s.state == SandboxState::kReady &&
        label(s.labels, kSandboxHash) == pod_.sandboxHash) {
      current_ = &s;
    }
  }
  for (const auto& s : sandboxes_) {
    if (&s == current_) continue;
    bool live = s.state == SandboxState::kReady ||
                std::any_of(containers_.begin(), containers_.end(), [&](const Container& c) {
                  return c.podSandboxId == s.id && c.state != ContainerState::kExited;
                });
    if (live) {
      // It may hold what the new one needs (host ports): it goes first.
      ctx_.gc.removeSandbox(s, containers_, grace_);
    } else {
      // Dead (after a reboot, every sandbox is): removed after every pod's pass.
      ctx_.gc.deferSandbox(s, containers_);
    }
  }
  sandboxConfig_ = sandboxConfig(pod_, sandboxAttempt_, logDirectoryOf(ctx_.paths, pod_.uid),
                                 ctx_.config.cgroupParent);
  if (current_) {
    sandboxId_ = current_->id;
    sandboxCreated_ = current_->createdAt;
    sandboxConfig_.attempt = current_->attempt;
  }
}

void PodPass::prepare() {
  volumes_ = prepareVolumes(pod_, ctx_.config.stateDir, ctx_.desired, ctx_.config.hostPathAllow);
  w_.waiting.clear();
  if (volumes_) {
    ctx_.events.clearWarning(w_.key, "#volumes");
    return;
  }
  std::string why = volumes_.status().message();
  waitAll("CreateContainerConfigError", why);
  ctx_.events.warnOnce(w_.key, "", "FailedMount", "Volumes not ready: " + why, "#volumes");
  if (volumes_.status().code() == core::Code::kNotFound) ctx_.askForRefs(pod_);
}

void PodPass::waitAll(const std::string& reason, const std::string& message) {
  for (const auto* list : {&pod_.initContainers, &pod_.containers})
    for (const auto& c : *list) w_.waiting[c.name] = {reason, message};
}

void PodPass::ensureSandbox() {
  std::string cause = pod_.uid + "/" + pod_.sandboxHash;
  if (const RetryBackoff* held = w_.refused.heldBack(kSandboxSlot, cause, ctx_.clock.now())) {
    ctx_.wakeAt(w_, held->retryAt);
    waitAll("ContainerCreating", backOffMessage(*held, "pod sandbox"));
  } else if (auto id = runSandbox(cause)) {
    sandboxId_ = *id;
    auto st = ctx_.runtime.podSandboxStatus(sandboxId_);
    if (st) sandboxCreated_ = st->sandbox.createdAt;
  }
}

// A new sandbox; nullopt when the runtime refused it (the containers wait, the next attempt
// backs off).
std::optional<std::string> PodPass::runSandbox(const std::string& cause) {
  // A failed pull of the pause image is not the end: the runtime may still have it under another
  // name, so RunPodSandbox decides.
  ctx_.images.ensurePresent(ctx_.config.sandboxImage).ignore();
  auto logs = ctx_.paths.makeLogDir(pod_.uid, "");
  auto id = logs.isOk() ? ctx_.runtime.runPodSandbox(sandboxConfig_, pod_.runtimeClassName)
                        : core::Result<std::string>(logs);
  if (!id) {
    refusedBy(kSandboxSlot, cause, "RunPodSandbox", id.status());
    ctx_.events.warnOnce(w_.key, "", "FailedCreatePodSandBox",
                         "Failed to create pod sandbox: " + id.status().message(), kSandboxSlot);
    waitAll("ContainerCreating", id.status().message());
    return std::nullopt;
  }
  ctx_.stats.sandboxesCreated++;
  ctx_.log.info("pod ", w_.key, ": sandbox ", id->substr(0, 12), " attempt ",
                sandboxConfig_.attempt);
  ctx_.events.clearWarning(w_.key, kSandboxSlot);
  w_.refused.succeeded(kSandboxSlot);
  ctx_.events.record(w_.key, kNormal, "SandboxCreated", "",
                     "Pod sandbox " + id->substr(0, 12) + " created (attempt " +
                         std::to_string(sandboxConfig_.attempt) + ")");
  return *id;
}

void PodPass::groupContainers() {
  for (const auto& c : containers_) {
    if (c.podSandboxId != sandboxId_ || sandboxId_.empty()) continue;
    byName_[label(c.labels, kContainerName)].push_back(c);
  }
  for (auto& [name, list] : byName_) {
    std::sort(list.begin(), list.end(),
              [](const auto& a, const auto& b) { return a.createdAt > b.createdAt; });
  }
  std::set<std::string> wanted;
  for (const auto* list : {&pod_.initContainers, &pod_.containers})
    for (const auto& c : *list) wanted.insert(c.name);
  for (auto it = byName_.begin(); it != byName_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    for (const auto& c : it->second) ctx_.gc.removeContainer(c, grace_);
    it = byName_.erase(it);
  }
}

void PodPass::stepAll(PodView& view) {
  bool initDone = true;
  for (const auto& spec : pod_.initContainers) {
    ContainerView v = viewOf(spec);
    if (initDone && ready()) {
      initDone = stepInit(spec, v);
      v = viewOf(spec);
    } else {
      initDone = false;
    }
    view.init.push_back(std::move(v));
  }
  for (const auto& spec : pod_.containers) {
    if (initDone && ready()) stepContainer(spec);
    view.containers.push_back(viewOf(spec));
  }
}

// One step for an init container; true when it has completed successfully.
bool PodPass::stepInit(const ContainerSpec& spec, ContainerView& v) {
  auto& list = byName_[spec.name];
  if (list.empty()) {
    createAndStart(spec);
    return false;
  }
  const Container& latest = list[0];
  if (latest.state == ContainerState::kCreated) {
    startCreated(spec, latest);
    return false;
  }
  if (latest.state != ContainerState::kExited) return false;
  if (v.current) ctx_.events.noteExit(w_.key, spec.name, *v.current);
  if (latest.labels.count(kContainerHash) && label(latest.labels, kContainerHash) != spec.hash) {
    createAndStart(spec);
    return false;
  }
  if (v.current && v.current->exitCode == 0) return true;
  if (pod_.restartPolicy == RestartPolicy::kNever) return false;
  restartWithBackoff(spec, v.current);
  return false;
}

void PodPass::stepContainer(const ContainerSpec& spec) {
  auto& list = byName_[spec.name];
  if (list.empty()) {
    createAndStart(spec);
    return;
  }
  const Container latest = list[0];
  bool changed = label(latest.labels, kContainerHash) != spec.hash;
  if (latest.state == ContainerState::kRunning && changed) {
    ctx_.log.info("pod ", w_.key, ": container ", spec.name, " spec changed, replacing");
    ctx_.events.record(
        w_.key, kNormal, "Killing", spec.name,
        "Stopping container " + spec.name + ": its spec changed, it will be replaced");
    ctx_.gc.removeContainer(latest, grace_);
    list.erase(list.begin());
    w_.backoff.erase(spec.name);
    createAndStart(spec);
  } else if (latest.state == ContainerState::kRunning) {
    probe(spec, latest);
  } else if (latest.state == ContainerState::kCreated) {
    startCreated(spec, latest);
  } else if (latest.state == ContainerState::kExited && changed) {
    w_.backoff.erase(spec.name);
    createAndStart(spec);
  } else if (latest.state == ContainerState::kExited) {
    auto st = ctx_.statuses.get(ctx_.runtime, latest);
    if (!st) return;
    ctx_.events.noteExit(w_.key, spec.name, *st);
    bool restart = pod_.restartPolicy == RestartPolicy::kAlways ||
                   (pod_.restartPolicy == RestartPolicy::kOnFailure && st->exitCode != 0);
    if (restart) restartWithBackoff(spec, st);
  }
}

void PodPass::restartWithBackoff(const ContainerSpec& spec,
                                 const std::optional<ContainerStatus>& exited) {
  auto now = ctx_.clock.now();
  auto& bo = w_.backoff[spec.name];
  const auto& list = byName_[spec.name];
  if (bo.exitedId != list[0].id) {
    bo.exitedId = list[0].id;
    bo.exitSeenAt = now;
    if (exited && exited->startedAt > 0 && exited->finishedAt > exited->startedAt &&
        std::chrono::nanoseconds(exited->finishedAt - exited->startedAt) >=
            ctx_.config.backoffReset) {
      bo.delay = core::Duration::zero();  // it ran long enough: a fresh start
    }
  }
  auto readyAt = bo.exitSeenAt + bo.delay;
  if (now < readyAt) {
    auto secs = std::to_string(seconds(bo.delay));
    ctx_.events.warnOnce(w_.key, spec.name, "BackOff",
                         "Back-off " + secs + "s restarting failed container " + spec.name);
    w_.waiting[spec.name] = {"CrashLoopBackOff", "back-off " + secs +
                                                     "s restarting failed container=" + spec.name +
                                                     " pod=" + pod_.name + "_" + pod_.podNamespace +
                                                     "(" + pod_.uid + ")"};
    ctx_.wakeAt(w_, readyAt);
    return;
  }
  bo.delay = bo.delay == core::Duration::zero()
                 ? core::Duration(ctx_.config.backoffInitial)
                 : std::min<core::Duration>(bo.delay * 2, ctx_.config.backoffMax);
  createAndStart(spec);
}

void PodPass::probe(const ContainerSpec& spec, const Container& c) {
  if (!spec.liveness) return;
  auto now = ctx_.clock.now();
  auto& p = w_.probes[spec.name];
  const auto& ps = *spec.liveness;
  if (p.containerId != c.id) {
    auto first = ps.initialDelaySeconds > 0 ? ps.initialDelaySeconds : ps.periodSeconds;
    p = PodState::Probe{c.id, now + std::chrono::seconds(first), 0};
  }
  if (now >= p.nextAt) {
    auto r = ctx_.runtime.execSync(c.id, ps.command, std::chrono::seconds(ps.timeoutSeconds));
    bool ok = r && r->exitCode == 0;
    p.failures = ok ? 0 : p.failures + 1;
    p.nextAt = now + std::chrono::seconds(ps.periodSeconds);
    if (p.failures >= ps.failureThreshold) {
      ctx_.log.info("pod ", w_.key, ": container ", spec.name,
                    " failed its liveness probe, killing");
      ctx_.events.record(w_.key, kWarning, "Unhealthy", spec.name,
                         "Liveness probe failed " + std::to_string(p.failures) +
                             " times, killing container " + spec.name);
      auto s = ctx_.runtime.stopContainer(c.id, grace_);
      if (!s.isOk()) ctx_.log.warn("StopContainer: ", s.toString());
      ctx_.statuses.forget(c.id);
      w_.health.probeKilled.insert(spec.name);
      p = PodState::Probe{};
    }
  }
  if (!p.containerId.empty()) ctx_.wakeAt(w_, p.nextAt);
}

void PodPass::startCreated(const ContainerSpec& spec, const Container& c) {
  auto s = ctx_.runtime.startContainer(c.id);
  if (s.isOk()) return;
  w_.waiting[spec.name] = {"RunContainerError", s.message()};
  // Made again on a later pass: not before the back-off.
  refusedBy(spec.name, spec.hash + "/" + c.podSandboxId, "StartContainer", s);
  ctx_.events.warnOnce(w_.key, spec.name, "Failed", "Error: StartContainer: " + s.message());
  ctx_.gc.removeContainer(c, {});
}

void PodPass::createAndStart(const ContainerSpec& spec) {
  auto image = ctx_.images.containerImage(w_.key, w_.pulls, spec, ctx_.clock.now());
  if (image.wakeAt) ctx_.wakeAt(w_, *image.wakeAt);
  if (!image.ready) {
    w_.waiting[spec.name] = {image.reason, image.message};
    return;
  }
  // The runtime refused this container for this spec in this sandbox: not before the back-off.
  std::string cause = spec.hash + "/" + sandboxId_;
  if (const RetryBackoff* held = w_.refused.heldBack(spec.name, cause, ctx_.clock.now())) {
    ctx_.wakeAt(w_, held->retryAt);
    w_.waiting[spec.name] = {"CreateContainerError",
                             backOffMessage(*held, "container " + spec.name)};
    return;
  }
  auto cc = configOf(spec);
  if (!cc) return;
  auto id = ctx_.runtime.createContainer(sandboxId_, *cc, sandboxConfig_);
  if (!id) {
    w_.waiting[spec.name] = {"CreateContainerError", id.status().message()};
    refusedBy(spec.name, cause, "CreateContainer", id.status());
    ctx_.events.warnOnce(w_.key, spec.name, "Failed",
                         "Error: CreateContainer: " + id.status().message());
    return;
  }
  started(spec, *cc, *id);
}

// The container's configuration; nullopt (the container waiting with the reason) when its
// environment, mounts or log directory cannot be made.
std::optional<ContainerConfig> PodPass::configOf(const ContainerSpec& spec) {
  auto env = resolveEnv(spec, pod_, ctx_.desired, ctx_.config.nodeName, ctx_.hostIp);
  if (!env) {
    w_.waiting[spec.name] = {"CreateContainerConfigError", env.status().message()};
    ctx_.events.warnOnce(w_.key, spec.name, "Failed", "Error: " + env.status().message());
    if (env.status().code() == core::Code::kNotFound) ctx_.askForRefs(pod_);
    return std::nullopt;
  }
  const auto& list = byName_[spec.name];
  auto seen = w_.attempts.find(spec.name);
  uint32_t attempt =
      nextAttempt(seen == w_.attempts.end() ? std::nullopt : std::optional<uint32_t>(seen->second),
                  list.empty() ? std::nullopt : std::optional<uint32_t>(list[0].attempt));
  auto mounts = containerMounts(pod_, spec, *volumes_);
  auto logs = mounts ? ctx_.paths.makeLogDir(pod_.uid, spec.name) : mounts.status();
  if (!logs.isOk()) {
    w_.waiting[spec.name] = {"CreateContainerConfigError", logs.message()};
    ctx_.events.warnOnce(w_.key, spec.name, "Failed", "Error: " + logs.message());
    return std::nullopt;
  }
  return containerConfig(pod_, spec, attempt, std::move(env).value(), std::move(mounts).value());
}

// Created as `id`: started, and the newest of its name for the rest of this pass.
void PodPass::started(const ContainerSpec& spec, const ContainerConfig& cc, const std::string& id) {
  w_.refused.succeeded(spec.name);
  ctx_.events.record(
      w_.key, kNormal, "Created", spec.name,
      "Created container " + spec.name + " (attempt " + std::to_string(cc.attempt) + ")");
  ctx_.stats.containersCreated++;
  if (ctx_.createdCounter) ctx_.createdCounter->inc();
  w_.attempts[spec.name] = cc.attempt;
  auto startedOk = ctx_.runtime.startContainer(id);
  if (!startedOk.isOk()) {
    w_.waiting[spec.name] = {"RunContainerError", startedOk.message()};
    ctx_.log.warn("pod ", w_.key, ": StartContainer ", spec.name, ": ", startedOk.toString());
    ctx_.events.warnOnce(w_.key, spec.name, "Failed",
                         "Error: StartContainer: " + startedOk.message());
  } else {
    w_.waiting.erase(spec.name);
    ctx_.events.clearWarning(w_.key, spec.name);
    ctx_.events.record(w_.key, kNormal, "Started", spec.name, "Started container " + spec.name);
  }
  Container c;
  c.id = id;
  c.podSandboxId = sandboxId_;
  c.name = spec.name;
  c.attempt = cc.attempt;
  c.image = spec.image;
  c.state = startedOk.isOk() ? ContainerState::kRunning : ContainerState::kCreated;
  c.createdAt = std::numeric_limits<UnixNanos>::max();
  c.labels = cc.labels;
  ctx_.statuses.forget(id);
  auto& list = byName_[spec.name];
  list.insert(list.begin(), c);
}

void PodPass::removeOldExited() {
  for (auto& [name, list] : byName_) {
    for (size_t i = 2; i < list.size(); ++i) {
      if (list[i].state == ContainerState::kExited) ctx_.gc.removeContainer(list[i], {});
    }
  }
}

ContainerView PodPass::viewOf(const ContainerSpec& spec) {
  const auto& list = byName_[spec.name];
  ContainerView v;
  v.spec = &spec;
  if (!list.empty()) v.current = ctx_.statuses.get(ctx_.runtime, list[0]);
  if (list.size() > 1) v.previous = ctx_.statuses.get(ctx_.runtime, list[1]);
  auto it = w_.waiting.find(spec.name);
  if (it != w_.waiting.end()) {
    v.waitingReason = it->second.first;
    v.waitingMessage = it->second.second;
  }
  return v;
}

// The runtime refused to create something of the pod (its sandbox, a container): retrying at once
// would get the same answer (a privileged container, an unknown runtime handler), so the next
// attempt waits as a crash loop does, and the refusal is logged once per episode.
void PodPass::refusedBy(const std::string& slot, const std::string& cause, const char* call,
                        const core::Status& s) {
  bool first = w_.refused.failedAgain(slot, cause, s.message(), ctx_.config.backoffInitial,
                                      ctx_.config.backoffMax, ctx_.clock.now());
  ctx_.wakeAt(w_, w_.refused.find(slot)->retryAt);
  if (first) {
    ctx_.log.warn("pod ", w_.key, ": ", call, (slot == kSandboxSlot ? "" : " " + slot), ": ",
                  s.toString(), " (retried with back-off; not logged again until it changes)");
  }
}

}  // namespace

std::string logDirectoryOf(const HostPaths& paths, const std::string& uid) {
  auto dir = paths.logDir(uid);
  return dir ? *dir : std::string();
}

std::string syncPod(WorkerContext& ctx, PodState& state, const Observed& all) {
  auto status = nlohmann::json::parse(PodPass(ctx, state).run(all));
  auto health = judgeHealth(state.health, *state.spec, state.version, status, ctx.clock.now(),
                            ctx.clock.wallNow());
  if (health.recheckAt) ctx.wakeAt(state, *health.recheckAt);
  status["outpost"] = std::move(health.outpost);
  if (state.held) {
    // The old version runs on: the status says what waits and why.
    const HeldUpdate& h = *state.held;
    auto& o = status["outpost"];
    o = {{"desiredVersion", state.version},
         {"health", "held"},
         {"reason", h.reason},
         {"message", h.message}};
    if (h.deletion) {
      o["pendingDeletion"] = true;
    } else {
      o["pendingVersion"] = h.pendingVersion;
    }
    if (h.window && h.heldUntil) o["heldUntil"] = rfc3339(*h.heldUntil);
  }
  return status.dump();
}

std::string observedPodStatus(WorkerContext& ctx, PodState& state, const Observed& all) {
  auto status = nlohmann::json::parse(PodPass(ctx, state).observeOnly(all));
  status["outpost"] = {{"desiredVersion", state.version},
                       {"health", "progressing"},
                       {"reason", "Terminating"},
                       {"message", "the pod is being deleted"}};
  return status.dump();
}

std::string invalidStatus(const PodState& state, const std::string& why, core::WallTime now,
                          Transitions& transitions, const std::string& reason) {
  auto status = nlohmann::json::parse(invalidPodStatusJson(why, transitions, now, reason));
  status["outpost"] = unhealthyOutpost(state.version, reason, why);
  return status.dump();
}

std::vector<std::string> liveContainers(const Observed& all, const std::string& uid) {
  std::vector<std::string> ids;
  for (const auto& c : all.containers) {
    if (label(c.labels, kPodUid) == uid && c.state != ContainerState::kExited) ids.push_back(c.id);
  }
  return ids;
}

}  // namespace outpost::deploy
