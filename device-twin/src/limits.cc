// What the twins refuse so that nothing from outside grows them without bound or crashes them: JSON
// past the depth and size limits, devices past max_devices, properties past
// max_properties_per_device, values past max_value_bytes (docs/device-twin.md, Limits).
#include "outpost/twin/rules.h"
#include "service.h"

namespace outpost::twin {

void TwinServiceImpl::refused(Refusal why, const std::string& what, const std::string& reason) {
  refused_[static_cast<size_t>(why)]->inc();
  log_.warn("refused ", what, ": ", reason);
}

core::Result<json> TwinServiceImpl::parseOutside(const std::string& what, std::string_view text,
                                                 size_t maxBytes, bool stringContent) {
  validation::JsonLimits limits;
  limits.maxBytes = maxBytes;
  auto j = stringContent ? parseJsonContent(text, limits) : parseJson(text, limits);
  if (!j.isOk() && j.status().code() == core::Code::kResourceExhausted)
    refused(Refusal::kJson, what, j.status().message());
  return j;
}

bool TwinServiceImpl::makeRoom(DeviceEntry& d, size_t newNames, const std::set<std::string>& keep,
                               std::vector<std::string>& dropped) {
  if (newNames == 0) return true;
  size_t limit = opts_.maxPropertiesPerDevice;
  if (d.twin.size() + newNames <= limit) return true;
  size_t deleted = 0;
  for (const auto& [name, p] : d.twin) deleted += isDeleted(p) && !keep.count(name) ? 1 : 0;
  // Live properties, and the new ones, must fit even when every deleted one gives its place.
  if (d.twin.size() - deleted + newNames > limit) return false;
  size_t excess = d.twin.size() + newNames - limit;
  for (auto it = d.twin.begin(); it != d.twin.end() && excess > 0;) {
    if (!isDeleted(it->second) || keep.count(it->first)) {
      ++it;
      continue;
    }
    dropped.push_back(it->first);
    it = d.twin.erase(it);
    --excess;
  }
  return true;
}

std::string TwinServiceImpl::checkValue(const std::string& property, const char* side,
                                        const std::string& value, bool& tooLong) const {
  tooLong = false;
  std::string where = "property " + validation::printable(property) + ": " + side + " value";
  if (value.size() > opts_.maxValueBytes) {
    tooLong = true;
    return where + " of " + std::to_string(value.size()) + " bytes is over the limit of " +
           std::to_string(opts_.maxValueBytes) + " bytes (device.max_value_bytes)";
  }
  if (!validPropertyChars(value))
    return where + " \"" + validation::printable(value) + "\" " + std::string(kPropertyValueRule);
  return {};
}

void TwinServiceImpl::deviceOverLimit(const metadb::KeyChange& key, const std::string& id) {
  bool first = overLimit_.emplace(id, key).second;
  if (!first) return;  // counted and logged once, not at every reconcile
  refused(Refusal::kMaxDevices, "device " + validation::printable(id),
          "this node serves its limit of " + std::to_string(opts_.maxDevices) +
              " devices (device.max_devices); bound once another leaves");
}

void TwinServiceImpl::bindWaiting() {
  while (!overLimit_.empty() && devices_.size() < opts_.maxDevices) {
    auto it = overLimit_.begin();
    metadb::KeyChange key = it->second;
    overLimit_.erase(it);
    reconcileKey(key);  // binds it, or forgets it when its object changed meanwhile
  }
}

}  // namespace outpost::twin
