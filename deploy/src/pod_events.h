#pragma once
// The pods' events (what `outpostctl describe` shows) and log directories, as
// Reconciler::podInfo answers them; and the rules that keep a pass from repeating an event.

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/metrics.h"
#include "outpost/deploy/reconciler.h"

namespace outpost::deploy {

inline constexpr const char* kNormal = "Normal";
inline constexpr const char* kWarning = "Warning";

// Written on deploy's loop; info() is callable from any thread.
class PodEvents {
 public:
  // `metrics` may be null; else every event is counted in outpost_deploy_actions_total{action}
  // (Normal) or outpost_deploy_errors_total{reason} (Warning).
  PodEvents(const core::Clock& clock, core::MetricsRegistry* metrics);

  // Appends an event to the pod's ring of PodRuntimeInfo::kMaxPodEvents (the oldest goes); a
  // repeat of the newest one is counted on it instead.
  void record(const std::string& pod, const char* type, const std::string& reason,
              const std::string& container, const std::string& message);
  // A Warning that a pass would repeat while its cause lasts: recorded only when it differs from
  // the last one of its slot (`slot`, else `container`). True when recorded.
  bool warnOnce(const std::string& pod, const std::string& container, const std::string& reason,
                const std::string& message, const std::string& slot = "");
  // The step of `slot` succeeded: its next warning is recorded again.
  void clearWarning(const std::string& pod, const std::string& slot);
  // An exited container: Completed (Normal) for code 0, Exited (Warning) otherwise; once per
  // container id, however many passes see it.
  void noteExit(const std::string& pod, const std::string& name, const ContainerStatus& status);

  // Where the pod's logs are (the sandbox's CRI log directory).
  void setPod(const std::string& pod, const std::string& uid, const std::string& logDirectory);
  // The uid setPod() recorded, or "".
  std::string uidOf(const std::string& pod) const;
  // The pod is gone: its info and what warnOnce/noteExit remember.
  void forget(const std::string& pod);
  // The pod's log directory and events; nullopt when nothing was recorded of it.
  std::optional<PodRuntimeInfo> info(const std::string& pod) const;

 private:
  // What keeps passes from repeating an event, per pod (loop only).
  struct Seen {
    std::map<std::string, std::string> warned;     // slot -> reason and message last warned
    std::map<std::string, std::string> exitNoted;  // container name -> id of the exit recorded
  };
  void count(const char* type, const std::string& reason);

  const core::Clock& clock_;
  core::MetricsRegistry* metrics_;
  std::map<std::string, Seen> seen_;
  mutable std::mutex mu_;
  std::map<std::string, PodRuntimeInfo> info_;  // guarded by mu_
};

}  // namespace outpost::deploy
