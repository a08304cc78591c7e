// Image pre-pull: the images of each `imageprepull` desired object, pulled and reported.

#include "image_prepull.h"

#include <nlohmann/json.hpp>

#include "outpost/validation/validation.h"
#include "pod_spec.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;

// An image reference (name, tag, digest) is at most this long; longer is no reference.
constexpr size_t kMaxImageRef = 1024;

core::Status imageRef(const std::string& image, size_t index) {
  std::string what = "spec.images[" + std::to_string(index) + "]";
  if (image.empty()) return core::invalidArgument(what + ": empty");
  if (image.size() > kMaxImageRef)
    return core::invalidArgument(what + ": longer than " + std::to_string(kMaxImageRef));
  for (char c : image) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || u >= 0x80) {
      return core::invalidArgument(what + ": \"" + validation::printable(image) +
                                   "\" is not an image reference (a space or control character)");
    }
  }
  return core::okStatus();
}

}  // namespace

core::Result<std::vector<std::string>> parsePrePull(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return core::invalidArgument("an ImagePrePull must be a JSON object");
  auto spec = j.find("spec");
  if (spec == j.end() || !spec->is_object())
    return core::invalidArgument("spec: required, an object");
  auto images = spec->find("images");
  if (images == spec->end() || !images->is_array())
    return core::invalidArgument("spec.images: required, a list of image references");
  if (images->size() > kMaxPrePullImages) {
    return core::invalidArgument("spec.images: " + std::to_string(images->size()) +
                                 " images, at most " + std::to_string(kMaxPrePullImages));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < images->size(); ++i) {
    const json& v = (*images)[i];
    if (!v.is_string())
      return core::invalidArgument("spec.images[" + std::to_string(i) + "]: not a string");
    OUTPOST_RETURN_IF_ERROR(imageRef(v.get<std::string>(), i));
    out.push_back(v.get<std::string>());
  }
  return out;
}

ImagePrePulls::ImagePrePulls(Runtime& runtime, ImagePuller& puller, PodEvents& events,
                             StatusSink& sink, core::Logger log)
    : runtime_(runtime), puller_(puller), events_(events), sink_(sink), log_(std::move(log)) {}

void ImagePrePulls::apply(const std::string& key, const std::optional<PodRecord>& rec) {
  if (!rec) {
    if (entries_.erase(key)) log_.info("image pre-pull ", key, " deleted: forgotten");
    events_.forget(key);
    return;
  }
  auto it = entries_.find(key);
  std::string stored = rec->version + " " + rec->json;
  if (it != entries_.end() && it->second.stored == stored) return;
  Entry e;
  e.stored = std::move(stored);
  e.version = rec->version.empty() ? metadataVersion(rec->json) : rec->version;
  auto images = parsePrePull(rec->json);
  if (!images) {
    e.error = images.status().message();
    log_.warn("image pre-pull ", key, " cannot be acted on: ", e.error);
  } else {
    for (auto& image : *images) {
      bool again = false;
      for (const auto& seen : e.images) again = again || seen.image == image;
      if (!again) e.images.push_back({image, "", "", ""});
    }
  }
  if (it != entries_.end()) {
    // Images both versions list keep what is known of them (and their back-off).
    for (auto& image : e.images) {
      for (const auto& old : it->second.images) {
        if (old.image == image.image) image = old;
      }
    }
    e.pulls = std::move(it->second.pulls);
    e.lastStatus = std::move(it->second.lastStatus);
  }
  entries_[key] = std::move(e);
}

void ImagePrePulls::applyAll(const std::vector<PodRecord>& all) {
  std::set<std::string> keys;
  for (const auto& rec : all) {
    keys.insert(rec.key);
    apply(rec.key, rec);
  }
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (keys.count(it->first)) {
      ++it;
      continue;
    }
    events_.forget(it->first);
    it = entries_.erase(it);
  }
}

void ImagePrePulls::run(core::MonoTime now) {
  for (auto& [key, e] : entries_) {
    for (auto& image : e.images) {
      if (image.state == "present") continue;
      if (e.pulls.heldBack(image.image, image.image, now)) continue;
      if (image.state.empty()) {
        auto present = runtime_.imageStatus(image.image);
        if (present && *present) {
          image.state = "present";
          continue;
        }
      }
      if (image.state != "pulling") {
        image = {image.image, "pulling", "", ""};
        publish(key, e);  // a pull may take long: say so first
      }
      ContainerSpec spec;
      spec.name = image.image;
      spec.image = image.image;
      spec.pullPolicy = PullPolicy::kIfNotPresent;
      auto outcome = puller_.containerImage(key, e.pulls, spec, now);
      if (outcome.ready) {
        if (image.state != "present")
          log_.info("image pre-pull ", key, ": ", image.image, " present");
        image = {image.image, "present", "", ""};
      } else {
        image = {image.image, "failed", outcome.reason, outcome.message};
      }
    }
    publish(key, e);
  }
}

void ImagePrePulls::publish(const std::string& key, Entry& e) {
  json images = json::array();
  for (const auto& image : e.images) {
    json i = {{"image", image.image}, {"state", image.state}};
    if (!image.reason.empty()) i["reason"] = image.reason;
    if (!image.message.empty()) i["message"] = image.message;
    images.push_back(std::move(i));
  }
  json status = {{"images", std::move(images)}, {"observedVersion", e.version}};
  if (!e.error.empty()) status["error"] = e.error;
  std::string text = status.dump();
  if (text == e.lastStatus) return;
  e.lastStatus = text;
  sink_.objectStatus(key, text);
}

}  // namespace outpost::deploy
