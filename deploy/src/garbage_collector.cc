#include "garbage_collector.h"

#include <algorithm>

#include "container_config.h"
#include "labels.h"
#include "outpost/deploy/cgroup.h"
#include "outpost/validation/validation.h"

namespace outpost::deploy {
namespace {

constexpr std::chrono::seconds kDefaultGrace{30};

bool gone(const core::Status& s) { return s.isOk() || s.code() == core::Code::kNotFound; }

}  // namespace

std::chrono::seconds graceOf(const PodSandbox& s) {
  try {
    return std::chrono::seconds(std::stoll(label(s.annotations, kGrace)));
  } catch (const std::exception&) {
    return kDefaultGrace;
  }
}

std::optional<ContainerStatus> StatusCache::get(Runtime& runtime, const Container& c) {
  auto it = statuses_.find(c.id);
  if (it != statuses_.end() && it->second.container.state == c.state &&
      c.state != ContainerState::kCreated) {
    return it->second;
  }
  auto st = runtime.containerStatus(c.id);
  if (!st) return std::nullopt;
  st->container.podSandboxId = c.podSandboxId;
  statuses_[c.id] = *st;
  return *st;
}

void StatusCache::prune(const Observed& o) {
  std::set<std::string> ids;
  for (const auto& c : o.containers) ids.insert(c.id);
  for (auto it = statuses_.begin(); it != statuses_.end();) {
    it = ids.count(it->first) ? std::next(it) : statuses_.erase(it);
  }
}

Orphans findOrphans(const Observed& o, const std::set<std::string>& desiredUids,
                    const std::function<bool(const std::string& labelKey)>& kept) {
  Orphans out;
  auto consider = [&](const Labels& labels) {
    std::string uid = label(labels, kPodUid);
    std::string key = label(labels, kPodKey);
    if (desiredUids.count(uid) || kept(key)) return;
    out.uids.insert(uid);
    out.labelKeys.insert(key);
  };
  for (const auto& s : o.sandboxes) consider(s.labels);
  for (const auto& c : o.containers) consider(c.labels);
  return out;
}

GarbageCollector::GarbageCollector(Runtime& runtime, const HostPaths& paths,
                                   std::string cgroupParent, core::Logger log,
                                   ReconcilerStats& stats, StatusCache& statuses)
    : runtime_(runtime),
      paths_(paths),
      cgroupParent_(std::move(cgroupParent)),
      log_(std::move(log)),
      stats_(stats),
      statuses_(statuses) {}

void GarbageCollector::stopContainer(Container& c, std::chrono::seconds grace) {
  if (c.state == ContainerState::kRunning || c.state == ContainerState::kUnknown) {
    auto s = runtime_.stopContainer(c.id, grace);
    if (!gone(s)) log_.warn("StopContainer: ", s.toString());
  }
  c.state = ContainerState::kExited;
  statuses_.forget(c.id);  // its exit code and finish time are read anew
}

bool GarbageCollector::removeContainer(const Container& c, std::chrono::seconds grace) {
  if (c.state == ContainerState::kRunning || c.state == ContainerState::kUnknown) {
    auto s = runtime_.stopContainer(c.id, grace);
    if (!gone(s)) log_.warn("StopContainer: ", s.toString());
  }
  auto s = runtime_.removeContainer(c.id);
  if (!gone(s)) {
    log_.warn("RemoveContainer: ", s.toString());
    return false;
  }
  statuses_.forget(c.id);
  stats_.containersRemoved++;
  return true;
}

bool GarbageCollector::removeSandbox(const PodSandbox& s, const std::vector<Container>& containers,
                                     std::chrono::seconds grace) {
  for (const auto& c : containers) {
    if (c.podSandboxId == s.id) removeContainer(c, grace);
  }
  auto st = runtime_.stopPodSandbox(s.id);
  if (!gone(st)) {
    log_.warn("StopPodSandbox: ", st.toString());
    return false;
  }
  st = runtime_.removePodSandbox(s.id);
  if (!gone(st)) {
    log_.warn("RemovePodSandbox: ", st.toString());
    return false;
  }
  stats_.sandboxesRemoved++;
  return true;
}

void GarbageCollector::deferSandbox(PodSandbox s, std::vector<Container> containers) {
  deferred_.emplace_back(std::move(s), std::move(containers));
}

void GarbageCollector::removeDeferred() {
  auto dead = std::move(deferred_);
  deferred_.clear();
  for (const auto& [sandbox, containers] : dead) removeSandbox(sandbox, containers, {});
}

bool GarbageCollector::removeUids(const Observed& o, const std::set<std::string>& uids) {
  bool clean = true;
  for (const auto& s : o.sandboxes) {
    if (!uids.count(label(s.labels, kPodUid))) continue;
    if (!removeSandbox(s, o.containers, graceOf(s))) clean = false;
  }
  for (const auto& c : o.containers) {
    if (!uids.count(label(c.labels, kPodUid))) continue;
    bool inSandbox = std::any_of(o.sandboxes.begin(), o.sandboxes.end(),
                                 [&](const auto& s) { return s.id == c.podSandboxId; });
    if (!inSandbox) removeContainer(c, kDefaultGrace);
  }
  for (const auto& uid : uids) removePodFiles(uid);
  return clean;
}

void GarbageCollector::removePodFiles(const std::string& uid) {
  // The uid comes from a runtime label an older agent may have written from a bad pod: it names
  // a cgroup and a directory only when it is a uid.
  if (auto valid = validation::uid("the pod-uid label", uid); !valid.isOk()) {
    if (!uid.empty()) log_.warn("not removing files of a pod: ", valid.message());
    return;
  }
  if (!cgroupParent_.empty()) removeCgroup(podCgroup(cgroupParent_, uid));
  if (auto s = paths_.removePod(uid); !s.isOk())
    log_.warn("removing the directory of pod ", uid, ": ", s.toString());
}

void GarbageCollector::collectOrphans(const Observed& o, const Orphans& orphans, bool complete,
                                      const std::function<void(const std::string& key)>& ask) {
  if (orphans.uids.empty()) return;
  if (!complete) {
    // The cloud's answer lands in the store (the pod is named again and adopted) or settles that
    // it does not want it.
    for (const auto& l : orphans.labelKeys) {
      if (auto key = keyFromLabel(l)) ask(*key);
    }
    // After a store recovery the store is empty until the cloud resends the desired set: these
    // pods are most likely still wanted, and removing them would lose the site's work.
    if (!holdingOrphans_) {
      log_.warn(
          "the desired set is incomplete (the store was recovered and the cloud has not "
          "resent it yet): keeping ",
          orphans.uids.size(), orphans.uids.size() == 1 ? " pod" : " pods",
          " that the store does not name until it is complete");
    }
    holdingOrphans_ = true;
    return;
  }
  if (holdingOrphans_) log_.info("the desired set is complete again");
  holdingOrphans_ = false;
  log_.info("collecting ", orphans.uids.size(), " pods nobody wants");
  removeUids(o, orphans.uids);
}

}  // namespace outpost::deploy
