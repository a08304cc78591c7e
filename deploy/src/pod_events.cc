#include "pod_events.h"

#include <string_view>

namespace outpost::deploy {

PodEvents::PodEvents(const core::Clock& clock, core::MetricsRegistry* metrics)
    : clock_(clock), metrics_(metrics) {}

void PodEvents::record(const std::string& pod, const char* type, const std::string& reason,
                       const std::string& container, const std::string& message) {
  auto now = clock_.wallNow();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& events = info_[pod].events;
    if (!events.empty() && events.back().type == type && events.back().reason == reason &&
        events.back().container == container && events.back().message == message) {
      events.back().count++;
      events.back().last = now;
    } else {
      events.push_back({now, now, type, reason, container, message, 1});
      if (events.size() > PodRuntimeInfo::kMaxPodEvents) events.erase(events.begin());
    }
  }
  count(type, reason);
}

void PodEvents::count(const char* type, const std::string& reason) {
  if (!metrics_) return;
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

bool PodEvents::warnOnce(const std::string& pod, const std::string& container,
                         const std::string& reason, const std::string& message,
                         const std::string& slot) {
  std::string what = reason + "\n" + message;
  auto& last = seen_[pod].warned[slot.empty() ? container : slot];
  if (last == what) return false;
  last = what;
  record(pod, kWarning, reason, container, message);
  return true;
}

void PodEvents::clearWarning(const std::string& pod, const std::string& slot) {
  auto it = seen_.find(pod);
  if (it != seen_.end()) it->second.warned.erase(slot);
}

void PodEvents::noteExit(const std::string& pod, const std::string& name,
                         const ContainerStatus& status) {
  auto& noted = seen_[pod].exitNoted[name];
  if (noted == status.container.id) return;
  noted = status.container.id;
  std::string text = "Container " + name + " exited with code " + std::to_string(status.exitCode);
  if (!status.reason.empty()) text += " (" + status.reason + ")";
  if (status.exitCode == 0) {
    record(pod, kNormal, "Completed", name, text);
  } else {
    record(pod, kWarning, "Exited", name, text);
  }
}

void PodEvents::setPod(const std::string& pod, const std::string& uid,
                       const std::string& logDirectory) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& info = info_[pod];
  info.uid = uid;
  info.logDirectory = logDirectory;
}

std::string PodEvents::uidOf(const std::string& pod) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = info_.find(pod);
  return it == info_.end() ? std::string() : it->second.uid;
}

void PodEvents::forget(const std::string& pod) {
  seen_.erase(pod);
  std::lock_guard<std::mutex> lock(mu_);
  info_.erase(pod);
}

std::optional<PodRuntimeInfo> PodEvents::info(const std::string& pod) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = info_.find(pod);
  if (it == info_.end()) return std::nullopt;
  return it->second;
}

}  // namespace outpost::deploy
