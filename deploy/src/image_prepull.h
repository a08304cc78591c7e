#pragma once
// Image pre-pull (docs/rollouts.md, "On the node"): a desired object of type `imageprepull` asks
// the node to pull images before a pod needs them. Each image is pulled with the pods' pull
// back-off and reported as pulling, present or failed with the reason.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "image_puller.h"
#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/status.h"
#include "outpost/deploy/ports.h"
#include "retry_backoff.h"

namespace outpost::deploy {

// The store type of a pre-pull object: its key is "<ns>/imageprepull/<name>".
inline constexpr const char* kImagePrePullType = "imageprepull";

// At most this many images per object; a longer list is refused whole.
inline constexpr size_t kMaxPrePullImages = 100;

// The images an ImagePrePull object's JSON lists (spec.images), or INVALID_ARGUMENT naming what
// is wrong (not an object, no list, an image reference that is empty, too long or has a space or
// a control character, too many images).
core::Result<std::vector<std::string>> parsePrePull(const std::string& json);

// On deploy's loop; runtime calls block.
class ImagePrePulls {
 public:
  ImagePrePulls(Runtime& runtime, ImagePuller& puller, PodEvents& events, StatusSink& sink,
                core::Logger log);

  // The desired object at `key` is `rec` (nullopt: deleted, forgotten; its images stay).
  void apply(const std::string& key, const std::optional<PodRecord>& rec);
  // Every desired pre-pull object (a full re-read): the others are forgotten.
  void applyAll(const std::vector<PodRecord>& all);
  // Pulls what is missing and not held back by a failed pull's back-off, publishing each change.
  void run(core::MonoTime now);

 private:
  struct Image {
    std::string image;
    std::string state;  // pulling, present, failed; "" before the first look
    std::string reason;
    std::string message;
  };
  struct Entry {
    std::string version;
    std::string stored;  // the record's version and JSON: an unchanged object is not parsed again
    std::string error;   // why the object cannot be acted on
    std::vector<Image> images;
    RetryBackoffs pulls;  // by image
    std::string lastStatus;
  };
  void publish(const std::string& key, Entry& e);

  Runtime& runtime_;
  ImagePuller& puller_;
  PodEvents& events_;  // the pulls' events, under the object's key
  StatusSink& sink_;
  core::Logger log_;
  std::map<std::string, Entry> entries_;
};

}  // namespace outpost::deploy
