// The cloud's side of the twins: Device objects (desired resources of type "device") bind devices
// to this node and carry desired values; KubeEdge 1.14's cloud_updated twins follow the version
// rule.
#include "outpost/twin/rules.h"
#include "service.h"

namespace outpost::twin {

namespace {

std::optional<metadb::VersionVector> versionAt(const json& prop, const char* key) {
  auto it = prop.find(key);
  if (it == prop.end() || !it->is_object()) return std::nullopt;
  auto c = it->find("cloud");
  auto e = it->find("edge");
  if (c == it->end() || e == it->end() || !c->is_number_integer() || !e->is_number_integer())
    return std::nullopt;
  return metadb::VersionVector{c->get<int64_t>(), e->get<int64_t>()};
}

std::optional<std::string> valueAt(const json& prop, const char* side) {
  auto it = prop.find(side);
  if (it == prop.end() || !it->is_object()) return std::nullopt;
  auto v = it->find("value");
  if (v == it->end() || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

}  // namespace

std::string TwinServiceImpl::deviceIdFor(const std::string& ns, const std::string& name) const {
  return opts_.deviceIdForm == DeviceIdForm::kNamespaced ? ns + "/" + name : name;
}

std::optional<DeviceObject> TwinServiceImpl::readDeviceObject(const std::string& key,
                                                              const std::string& text) {
  auto obj = parseDeviceObject(text);
  if (obj.isOk()) return std::move(obj).value();
  if (obj.status().code() == core::Code::kResourceExhausted) {
    refused(Refusal::kJson, "Device object " + validation::printable(key), obj.status().message());
  } else {
    log_.warn(validation::printable(key), ": ", obj.status().message());
  }
  return std::nullopt;
}

bool TwinServiceImpl::checkObjectDeviceId(const std::string& key, const std::string& ns,
                                          const std::string& name) {
  core::Status s = validation::dnsSubdomain("name", name);
  if (s.isOk() && opts_.deviceIdForm == DeviceIdForm::kNamespaced)
    s = validation::dnsLabel("namespace", ns);
  if (s.isOk()) return true;
  refused(Refusal::kDeviceId, "Device object " + validation::printable(key), s.message());
  return false;
}

void TwinServiceImpl::onKeysChanged(const metadb::KeysChanged& ev) {
  if (stopping_) return;
  for (const auto& k : ev.keys) {
    if (k.type == "device") reconcileKey(k);
  }
}

void TwinServiceImpl::reconcileAll() {
  auto all = reader_->list("device");
  if (!all.isOk()) {
    log_.error("listing Device objects failed: ", all.status().toString());
    return;
  }
  std::set<std::string> bound;
  std::set<std::string> waiting;
  for (const auto& r : *all) {
    auto obj = readDeviceObject(r.key, r.object);
    if (!obj || obj->nodeName != opts_.nodeName) continue;
    std::string id = deviceIdFor(r.ns, r.name);
    if (!checkObjectDeviceId(r.key, r.ns, r.name)) continue;
    if (!devices_.count(id) && devices_.size() >= opts_.maxDevices) {
      waiting.insert(id);
      deviceOverLimit({r.key, r.ns, r.type, r.name, false}, id);
      continue;
    }
    bound.insert(id);
    bindDevice(r.key, id, r.object, *obj);
  }
  for (auto it = overLimit_.begin(); it != overLimit_.end();)
    it = waiting.count(it->first) ? std::next(it) : overLimit_.erase(it);
  std::vector<std::string> gone;
  for (const auto& [id, d] : devices_) {
    if (!bound.count(id)) gone.push_back(id);
  }
  for (const auto& id : gone) unbindDevice(id);
}

void TwinServiceImpl::reconcileKey(const metadb::KeyChange& change) {
  const std::string& key = change.key;
  std::string id = deviceIdFor(change.ns, change.name);
  auto res = reader_->get(key);
  if (!res.isOk()) {
    log_.error("reading ", validation::printable(key), " failed: ", res.status().toString());
    return;
  }
  if (res->has_value()) {
    auto obj = readDeviceObject(key, (*res)->object);
    if (obj && obj->nodeName == opts_.nodeName &&
        checkObjectDeviceId(key, change.ns, change.name)) {
      if (!devices_.count(id) && devices_.size() >= opts_.maxDevices)
        return deviceOverLimit(change, id);
      overLimit_.erase(id);
      return bindDevice(key, id, (*res)->object, *obj);
    }
  }
  // Deleted, bound to another node, or no longer valid: it leaves this node if it came from this
  // key.
  if (auto w = overLimit_.find(id); w != overLimit_.end() && w->second.key == key)
    overLimit_.erase(w);
  auto from = deviceKeys_.find(id);
  if (devices_.count(id) && (from == deviceKeys_.end() || from->second == key)) unbindDevice(id);
}

void TwinServiceImpl::bindDevice(const std::string& key, const std::string& id,
                                 const std::string& objectText, const DeviceObject& obj) {
  deviceKeys_[id] = key;
  auto it = devices_.find(id);
  bool added = it == devices_.end();
  if (!added && it->second.record.object == objectText) return;  // nothing new

  // Desired values are compared with the previous Device object, not with the expected side: a
  // value the device (or a mapper) set locally stays until the cloud changes its desired value.
  std::map<std::string, std::string> previous;
  if (!added) {
    auto prev = parseDeviceObject(it->second.record.object);
    if (prev.isOk()) {
      for (const auto& p : prev->desired) previous[p.name] = p.value;
    }
  }
  DeviceEntry& d = devices_[id];
  metadb::Device record = d.record;
  record.id = id;
  record.name = obj.name;
  record.description = obj.description;
  record.model = obj.model;
  record.object = objectText;
  d.record = record;

  int64_t now = nowMs();
  std::map<std::string, std::optional<metadb::TwinProperty>> before;
  std::vector<metadb::TwinProperty> next;
  std::set<std::string> keep;
  for (const auto& dp : obj.desired) keep.insert(dp.name);
  std::vector<std::string> dropped;
  size_t pastLimit = 0, tooLong = 0, newNames = 0;
  for (const auto& dp : obj.desired) {
    auto prev = previous.find(dp.name);
    if (prev != previous.end() && prev->second == dp.value) continue;
    auto cur = d.twin.find(dp.name);
    std::optional<metadb::TwinProperty> last;
    if (cur != d.twin.end()) last = cur->second;
    if (dp.value.size() > opts_.maxValueBytes) {
      ++tooLong;
      continue;
    }

    bool existed = last && !isDeleted(*last);
    metadb::TwinProperty p;
    if (last) p = *last;
    p.name = dp.name;
    if (!existed) {
      p.actual.reset();
      p.optional = true;
      p.type = "string";
    }
    // v1beta1 keeps a property's type in the DeviceModel; desired.metadata.type is honoured when
    // present, else the twin keeps its type, else "string".
    if (!dp.type.empty()) p.type = dp.type;
    if (!validPropertyName(dp.name) || !validType(p.type) ||
        !validPropertyValue(dp.value, opts_.maxValueBytes) || !valueMatchesType(dp.value, p.type)) {
      log_.warn(validation::printable(key), ": desired property ", validation::printable(dp.name),
                " = \"", validation::printable(dp.value), "\" (", validation::printable(p.type),
                ") is not valid; ignored");
      continue;
    }
    if (p.expected && p.expected->value == dp.value && existed) continue;
    if (!last && !makeRoom(d, newNames + 1, keep, dropped)) {
      ++pastLimit;
      continue;
    }
    if (!last) ++newNames;
    p.expected = metadb::TwinValue{dp.value, now};
    p.expectedVersion.cloud++;
    before[dp.name] = last;
    next.push_back(p);
  }
  for (auto& p : next) d.twin[p.name] = p;
  if (tooLong > 0) {
    refused(Refusal::kMaxValueBytes, "Device object " + validation::printable(key),
            std::to_string(tooLong) + " desired values over the limit of " +
                std::to_string(opts_.maxValueBytes) + " bytes (device.max_value_bytes) ignored");
  }
  if (pastLimit > 0) {
    refused(Refusal::kMaxProperties, "Device object " + validation::printable(key),
            std::to_string(pastLimit) + " desired properties past the limit of " +
                std::to_string(opts_.maxPropertiesPerDevice) +
                " properties per device (device.max_properties_per_device) ignored");
  }

  metadb::DeviceUpdate update;
  update.deviceId = id;
  update.device = record;
  update.set = next;
  update.removeProperties = std::move(dropped);
  metadb::WriteBatch batch;
  batch.updateDevice(std::move(update));
  if (added) {
    log_.info("device ", id, " bound to this node (", key, ")");
    setDevicesGauge();
  }
  std::string eventId = newEventId();
  commit(id, std::move(batch),
         [this, id, added, record, before = std::move(before), eventId](core::Status s) {
           if (!s.isOk()) return;
           if (added) publishMembership({membershipEntry(record)}, {});
           auto it2 = devices_.find(id);
           if (before.empty() || it2 == devices_.end()) return;
           publishDocument(id, eventId, before, it2->second);
           publishDeltaIfAny(id, it2->second);
         });
}

void TwinServiceImpl::unbindDevice(const std::string& id) {
  auto it = devices_.find(id);
  if (it == devices_.end()) return;
  metadb::Device record = it->second.record;
  devices_.erase(it);
  deviceKeys_.erase(id);
  setDevicesGauge();
  log_.info("device ", id, " left this node");
  metadb::DeviceUpdate update;
  update.deviceId = id;
  update.remove = true;
  metadb::WriteBatch batch;
  batch.updateDevice(std::move(update));
  commit(id, std::move(batch), [this, record](core::Status s) {
    if (s.isOk()) publishMembership({}, {membershipEntry(record)});
  });
  bindWaiting();  // a device that max_devices kept out takes the place
}

void TwinServiceImpl::publishMembership(const std::vector<json>& added,
                                        const std::vector<json>& removed) {
  json msg = {{"event_id", newEventId()},
              {"timestamp", nowMs()},
              {"added_devices", added.empty() ? json(nullptr) : json(added)},
              {"removed_devices", removed.empty() ? json(nullptr) : json(removed)}};
  publish(membershipTopic("updated"), msg);
}

core::Status TwinServiceImpl::applyCloudTwinNow(const std::string& id, const std::string& content,
                                                std::function<void(core::Status)>& done) {
  if (!devices_.count(id))
    return core::notFound("device " + validation::printable(id) + " is not bound to this node");
  // KubeEdge sends the content as a string holding JSON; accepted either way.
  auto j = parseOutside("cloud twin of " + validation::printable(id), content,
                        validation::JsonLimits{}.maxBytes, true);
  if (!j.isOk() && j.status().code() == core::Code::kResourceExhausted) return j.status();
  if (!j.isOk() || !j->is_object())
    return core::invalidArgument("the cloud twin is not a JSON object");
  return applyCloudTwinJson(id, *j, done);
}

core::Status TwinServiceImpl::applyCloudTwinJson(const std::string& id, const json& j,
                                                 std::function<void(core::Status)>& done) {
  auto dev = devices_.find(id);
  if (dev == devices_.end()) return core::notFound("device " + id + " is not bound to this node");
  auto twinIt = j.find("twin");
  if (twinIt == j.end() || !twinIt->is_object())
    return core::invalidArgument("the cloud twin has no twin");

  DeviceEntry& d = dev->second;
  int64_t now = nowMs();
  bool rejected = false;
  std::map<std::string, std::optional<metadb::TwinProperty>> before;
  std::vector<metadb::TwinProperty> next;
  std::set<std::string> keep;
  for (const auto& [name, prop] : twinIt->items()) keep.insert(name);
  std::vector<std::string> dropped;
  size_t pastLimit = 0, tooLong = 0, newNames = 0;
  for (const auto& [name, prop] : twinIt->items()) {
    if (!validPropertyName(name) || !prop.is_object()) {
      rejected = true;
      continue;
    }
    auto cur = d.twin.find(name);
    std::optional<metadb::TwinProperty> last;
    if (cur != d.twin.end()) last = cur->second;
    if (!last) {
      // A new property takes a place only when one of its sides would be accepted.
      bool wanted = false;
      for (auto [side, versions] :
           {std::pair{"expected", "expected_version"}, std::pair{"actual", "actual_version"}})
        wanted |= valueAt(prop, side).has_value() && versionAt(prop, versions).has_value();
      if (wanted && !makeRoom(d, newNames + 1, keep, dropped)) {
        ++pastLimit;
        rejected = true;
        continue;
      }
    }
    metadb::TwinProperty p;
    if (last) p = *last;
    p.name = name;
    if (!last) p.type = "string";
    if (auto m = prop.find("metadata"); m != prop.end() && m->is_object()) {
      auto t = m->find("type");
      if (t != m->end() && t->is_string() && validType(t->get<std::string>()))
        p.type = t->get<std::string>();
    }
    if (isDeleted(p)) p.type = "string";
    bool changed = false;
    struct Side {
      const char* key;
      const char* versionKey;
      std::optional<metadb::TwinValue>* value;
      metadb::VersionVector* versions;
    };
    for (Side side : {Side{"expected", "expected_version", &p.expected, &p.expectedVersion},
                      Side{"actual", "actual_version", &p.actual, &p.actualVersion}}) {
      auto value = valueAt(prop, side.key);
      if (!value) continue;
      auto incoming = versionAt(prop, side.versionKey);
      if (value->size() > opts_.maxValueBytes) ++tooLong;
      bool ok = validPropertyValue(*value, opts_.maxValueBytes) && valueMatchesType(*value, p.type);
      if (!ok || decideCloudUpdate(*side.versions, incoming) == CloudVerdict::kReject) {
        rejected = true;
        continue;
      }
      *side.value = metadb::TwinValue{*value, now};
      *side.versions = *incoming;
      changed = true;
    }
    if (!changed) continue;
    if (!last) ++newNames;
    before[name] = last;
    next.push_back(std::move(p));
  }
  for (auto& p : next) d.twin[p.name] = p;
  if (tooLong > 0) {
    refused(Refusal::kMaxValueBytes, "cloud twin of " + id,
            std::to_string(tooLong) + " values over the limit of " +
                std::to_string(opts_.maxValueBytes) +
                " bytes (device.max_value_bytes) rejected; the edge's twin goes back");
  }
  if (pastLimit > 0) {
    refused(Refusal::kMaxProperties, "cloud twin of " + id,
            std::to_string(pastLimit) + " new properties past the limit of " +
                std::to_string(opts_.maxPropertiesPerDevice) +
                " properties per device (device.max_properties_per_device) rejected; the edge's "
                "twin goes back");
  }
  metadb::DeviceUpdate update;
  update.deviceId = id;
  update.set = next;
  update.removeProperties = std::move(dropped);
  metadb::WriteBatch batch;
  batch.updateDevice(std::move(update));
  // What the edge kept goes back, so the cloud converges on it.
  if (rejected) batch.enqueue(edgeUpdatedItem(id, d));
  std::string eventId = j.find("event_id") != j.end() && j["event_id"].is_string()
                            ? j["event_id"].get<std::string>()
                            : newEventId();
  commit(id, std::move(batch),
         [this, id, eventId, before = std::move(before), done = std::move(done)](core::Status s) {
           auto it = devices_.find(id);
           if (s.isOk() && !before.empty() && it != devices_.end()) {
             publishDocument(id, eventId, before, it->second);
             publishDeltaIfAny(id, it->second);
           }
           if (done) done(s);
         });
  return core::okStatus();
}

std::string TwinServiceImpl::boundDeviceFor(const std::string& cloudId) const {
  if (devices_.count(cloudId)) return cloudId;
  if (opts_.deviceIdForm != DeviceIdForm::kNamespaced || cloudId.find('/') != std::string::npos)
    return "";
  std::string found;
  for (const auto& [id, d] : devices_) {
    if (d.record.name != cloudId) continue;
    if (!found.empty()) return "";  // the same name in two namespaces: which one is not clear
    found = id;
  }
  return found;
}

void TwinServiceImpl::onCloudTwinMessage(const CloudTwinMessage& m,
                                         std::function<void(core::Status)> done) {
  if (stopping_) return;
  auto fail = [&](const core::Status& s) {
    // What a limit refused was logged where it was refused.
    if (s.code() != core::Code::kResourceExhausted)
      log_.warn("cloud ", validation::printable(m.operation), " of ",
                validation::printable(m.resource), " not applied: ", s.message());
    if (done) done(s);
  };
  const std::string& resource = m.resource;
  if (resource == "membership") {
    if (m.operation != "update") return fail(core::invalidArgument("not a membership update"));
    return onCloudMembership(m.content, std::move(done));
  }
  constexpr std::string_view kPrefix = "device/", kSuffix = "/twin/cloud_updated";
  if (resource.size() <= kPrefix.size() + kSuffix.size() || !resource.starts_with(kPrefix) ||
      !resource.ends_with(kSuffix)) {
    return fail(core::invalidArgument("not a twin resource"));
  }
  std::string cloudId =
      resource.substr(kPrefix.size(), resource.size() - kPrefix.size() - kSuffix.size());
  std::string id = boundDeviceFor(cloudId);
  if (id.empty()) {
    return fail(
        core::notFound("device " + validation::printable(cloudId) + " is not bound to this node"));
  }
  core::Status s = applyCloudTwinNow(id, m.content, done);
  if (!s.isOk()) fail(s);
}

// KubeEdge up to 1.14 sent a device's twin inside the membership update that bound it. Here Device
// objects bind devices; the twins in `added_devices` of devices bound here follow the version rule
// like cloud_updated. Devices not bound here are skipped (their Device object binds them), and
// removed_devices are left to the Device object's deletion.
void TwinServiceImpl::onCloudMembership(const std::string& content,
                                        std::function<void(core::Status)> done) {
  // KubeEdge sends the content as a string holding JSON; accepted either way.
  auto parsed =
      parseOutside("cloud membership update", content, validation::JsonLimits{}.maxBytes, true);
  if (!parsed.isOk() || !parsed->is_object()) {
    if (done) {
      done(!parsed.isOk() && parsed.status().code() == core::Code::kResourceExhausted
               ? parsed.status()
               : core::invalidArgument("the membership update is not a JSON object"));
    }
    return;
  }
  const json& j = *parsed;
  // Called once every twin in it is committed: ok, or the first error.
  struct Pending {
    int left = 1;
    core::Status first = core::okStatus();
    std::function<void(core::Status)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->done = std::move(done);
  auto finishOne = [pending](const core::Status& s) {
    if (!s.isOk() && pending->first.isOk()) pending->first = s;
    if (--pending->left == 0 && pending->done) pending->done(pending->first);
  };
  auto added = j.find("added_devices");
  if (added != j.end() && added->is_array()) {
    for (const auto& dev : *added) {
      if (!dev.is_object() || !dev.contains("id") || !dev["id"].is_string()) {
        log_.warn("cloud membership update: an added device without an id; skipped");
        continue;
      }
      std::string cloudId = dev["id"].get<std::string>();
      auto twinIt = dev.find("twin");
      if (twinIt == dev.end() || !twinIt->is_object() || twinIt->empty()) continue;
      std::string id = boundDeviceFor(cloudId);
      if (id.empty()) {
        log_.info("cloud membership update names device ", validation::printable(cloudId),
                  ", which no Device object binds to this node; its twin is not kept");
        continue;
      }
      ++pending->left;
      std::function<void(core::Status)> one = finishOne;
      core::Status s = applyCloudTwinJson(id, dev, one);
      if (!s.isOk()) {
        log_.warn("cloud twin for ", id, " in a membership update not applied: ", s.message());
        finishOne(s);
      }
    }
  }
  finishOne(core::okStatus());
}

}  // namespace outpost::twin
