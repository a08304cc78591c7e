#include "image_puller.h"

namespace outpost::deploy {
namespace {

long long seconds(core::Duration d) {
  return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

}  // namespace

ImagePuller::ImagePuller(Runtime& runtime, PodEvents& events, core::Logger log, PullBackoff backoff,
                         uint64_t& pulled)
    : runtime_(runtime),
      events_(events),
      log_(std::move(log)),
      backoff_(backoff),
      pulled_(pulled) {}

core::Status ImagePuller::ensurePresent(const std::string& image) {
  if (image.empty()) return core::okStatus();
  OUTPOST_ASSIGN_OR_RETURN(auto present, runtime_.imageStatus(image));
  if (present) return core::okStatus();
  auto ref = runtime_.pullImage(image);
  if (!ref) return ref.status();
  pulled_++;
  return core::okStatus();
}

ImageOutcome ImagePuller::containerImage(const std::string& pod, RetryBackoffs& pulls,
                                         const ContainerSpec& spec, core::MonoTime now) {
  if (spec.image.empty()) return {true, "", "", std::nullopt};
  const RetryBackoff* held = pulls.heldBack(spec.name, spec.image, now);
  std::optional<core::MonoTime> wake;
  if (held) wake = held->retryAt;
  if (spec.pullPolicy != PullPolicy::kAlways || held) {
    auto present = runtime_.imageStatus(spec.image);
    if (!present) return {false, "ErrImagePull", present.status().message(), wake};
    if (*present) {
      if (held) {
        log_.info("pod ", pod, ": image ", spec.image, " is present now");
        events_.record(pod, kNormal, "Pulled", spec.name,
                       "Container image \"" + spec.image + "\" is present now");
      }
      pulls.succeeded(spec.name);
      return {true, "", "", wake};
    }
    if (spec.pullPolicy == PullPolicy::kNever) {
      std::string message =
          "Container image \"" + spec.image + "\" is not present with pull policy of Never";
      events_.warnOnce(pod, spec.name, "ErrImageNeverPull", message);
      return {false, "ErrImageNeverPull", message, wake};
    }
  }
  if (held) {
    return {false, "ImagePullBackOff",
            "Back-off pulling image \"" + spec.image + "\": " + held->message, wake};
  }
  return pull(pod, pulls, spec, now);
}

ImageOutcome ImagePuller::pull(const std::string& pod, RetryBackoffs& pulls,
                               const ContainerSpec& spec, core::MonoTime now) {
  auto ref = runtime_.pullImage(spec.image);
  if (ref) {
    pulled_++;
    pulls.succeeded(spec.name);
    events_.record(pod, kNormal, "Pulled", spec.name,
                   "Successfully pulled image \"" + spec.image + "\"");
    return {true, "", "", std::nullopt};
  }
  if (spec.pullPolicy == PullPolicy::kAlways) {
    auto present = runtime_.imageStatus(spec.image);
    if (present && *present) {
      log_.warn("pull of ", spec.image, " failed (", ref.status().toString(),
                "), using the local copy");
      pulls.succeeded(spec.name);
      return {true, "", "", std::nullopt};
    }
  }
  pulls.failedAgain(spec.name, spec.image, ref.status().message(), backoff_.initial, backoff_.max,
                    now);
  const RetryBackoff& b = *pulls.find(spec.name);
  log_.warn("pod ", pod, ": pulling ", spec.image, " failed (", ref.status().toString(),
            "), next attempt in ", seconds(b.delay), " s");
  events_.record(pod, kWarning, "Failed", spec.name,
                 "Failed to pull image \"" + spec.image + "\": " + b.message +
                     "; next attempt in " + std::to_string(seconds(b.delay)) + " s");
  return {false, "ErrImagePull", b.message, b.retryAt};
}

}  // namespace outpost::deploy
