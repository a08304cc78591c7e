#pragma once
// Container images, as the kubelet's image manager handles them: a present image is used, a
// missing one is pulled, and a failed pull waits with ImagePullBackOff before the next one.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/deploy/runtime.h"
#include "pod_events.h"
#include "pod_spec.h"
#include "retry_backoff.h"

namespace outpost::deploy {

struct PullBackoff {
  std::chrono::seconds initial{10};
  std::chrono::seconds max{300};
};

// Whether a container's image is there; when not, the container's waiting reason and message.
struct ImageOutcome {
  bool ready = false;
  std::string reason;  // ErrImagePull, ImagePullBackOff, ErrImageNeverPull
  std::string message;
  // When the pod must be looked at again (the end of a back-off), if it must.
  std::optional<core::MonoTime> wakeAt;
};

// On deploy's loop; runtime calls block.
class ImagePuller {
 public:
  // `pulled` counts the successful pulls (ReconcilerStats::imagesPulled).
  ImagePuller(Runtime& runtime, PodEvents& events, core::Logger log, PullBackoff backoff,
              uint64_t& pulled);

  // The image of `spec`, a container of pod `pod`, whose failed pulls `pulls` holds by container
  // name. Present images are used (IfNotPresent, Never, and Always too when its pull fails:
  // offline first); a failed pull is a Warning event with the runtime's reason and waits
  // `backoff.initial`, doubling to `backoff.max`, before the next; during that wait only the
  // image's presence is checked.
  ImageOutcome containerImage(const std::string& pod, RetryBackoffs& pulls,
                              const ContainerSpec& spec, core::MonoTime now);

  // The sandbox (pause) image: present, or pulled now. Best effort: the runtime may hold it under
  // another name, so RunPodSandbox has the last word.
  core::Status ensurePresent(const std::string& image);

 private:
  ImageOutcome pull(const std::string& pod, RetryBackoffs& pulls, const ContainerSpec& spec,
                    core::MonoTime now);

  Runtime& runtime_;
  PodEvents& events_;
  core::Logger log_;
  PullBackoff backoff_;
  uint64_t& pulled_;
};

}  // namespace outpost::deploy
