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

void TwinServiceImpl::onKeysChanged(const metadb::KeysChanged& ev) {
  if (stopping_) return;
  for (const auto& k : ev.keys) {
    if (k.type == "device") reconcileKey(k.key);
  }
}

void TwinServiceImpl::reconcileAll() {
  auto all = reader_->list("device");
  if (!all.isOk()) {
    log_.error("listing Device objects failed: ", all.status().toString());
    return;
  }
  std::set<std::string> bound;
  for (const auto& r : *all) {
    auto obj = parseDeviceObject(r.object);
    if (!obj.isOk()) {
      log_.warn(r.key, ": ", obj.status().message());
      continue;
    }
    if (obj->nodeName != opts_.nodeName) continue;
    std::string id = deviceIdFor(r.ns, r.name);
    bound.insert(id);
    bindDevice(r.key, id, r.object, *obj);
  }
  std::vector<std::string> gone;
  for (const auto& [id, d] : devices_) {
    if (!bound.count(id)) gone.push_back(id);
  }
  for (const auto& id : gone) unbindDevice(id);
}

void TwinServiceImpl::reconcileKey(const std::string& key) {
  auto parts = metadb::parseKey(key);
  if (!parts.isOk()) return;
  std::string id = deviceIdFor(parts->ns, parts->name);
  auto res = reader_->get(key);
  if (!res.isOk()) {
    log_.error("reading ", key, " failed: ", res.status().toString());
    return;
  }
  if (res->has_value()) {
    auto obj = parseDeviceObject((*res)->object);
    if (obj.isOk() && obj->nodeName == opts_.nodeName) {
      return bindDevice(key, id, (*res)->object, *obj);
    }
    if (!obj.isOk()) log_.warn(key, ": ", obj.status().message());
  }
  // Deleted, or bound to another node: it leaves this node if it came from this key.
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
  for (const auto& dp : obj.desired) {
    auto prev = previous.find(dp.name);
    if (prev != previous.end() && prev->second == dp.value) continue;
    auto cur = d.twin.find(dp.name);
    std::optional<metadb::TwinProperty> last;
    if (cur != d.twin.end()) last = cur->second;
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
    if (!validPropertyName(dp.name) || !validType(p.type) || !validPropertyValue(dp.value) ||
        !valueMatchesType(dp.value, p.type)) {
      log_.warn(key, ": desired property ", dp.name, " = \"", dp.value, "\" (", p.type,
                ") is not valid; ignored");
      continue;
    }
    if (p.expected && p.expected->value == dp.value && existed) continue;
    p.expected = metadb::TwinValue{dp.value, now};
    p.expectedVersion.cloud++;
    before[dp.name] = last;
    next.push_back(p);
  }
  for (auto& p : next) d.twin[p.name] = p;

  metadb::DeviceUpdate update;
  update.deviceId = id;
  update.device = record;
  update.set = next;
  metadb::WriteBatch batch;
  batch.updateDevice(std::move(update));
  if (added) {
    log_.info("device ", id, " bound to this node (", key, ")");
    setDevicesGauge();
  }
  std::string eventId = newEventId();
  commit(id, std::move(batch), false,
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
  commit(id, std::move(batch), false, [this, record](core::Status s) {
    if (s.isOk()) publishMembership({}, {membershipEntry(record)});
  });
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
  auto dev = devices_.find(id);
  if (dev == devices_.end()) return core::notFound("device " + id + " is not bound to this node");
  json j = json::parse(content, nullptr, false);
  if (j.is_string()) j = json::parse(j.get<std::string>(), nullptr, false);  // JSON in a string
  if (!j.is_object()) return core::invalidArgument("the cloud twin is not a JSON object");
  auto twinIt = j.find("twin");
  if (twinIt == j.end() || !twinIt->is_object())
    return core::invalidArgument("the cloud twin has no twin");

  DeviceEntry& d = dev->second;
  int64_t now = nowMs();
  bool rejected = false;
  std::map<std::string, std::optional<metadb::TwinProperty>> before;
  std::vector<metadb::TwinProperty> next;
  for (const auto& [name, prop] : twinIt->items()) {
    if (!validPropertyName(name) || !prop.is_object()) {
      rejected = true;
      continue;
    }
    auto cur = d.twin.find(name);
    std::optional<metadb::TwinProperty> last;
    if (cur != d.twin.end()) last = cur->second;
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
      bool ok = validPropertyValue(*value) && valueMatchesType(*value, p.type);
      if (!ok || decideCloudUpdate(*side.versions, incoming) == CloudVerdict::kReject) {
        rejected = true;
        continue;
      }
      *side.value = metadb::TwinValue{*value, now};
      *side.versions = *incoming;
      changed = true;
    }
    if (!changed) continue;
    before[name] = last;
    next.push_back(std::move(p));
  }
  for (auto& p : next) d.twin[p.name] = p;
  metadb::DeviceUpdate update;
  update.deviceId = id;
  update.set = next;
  metadb::WriteBatch batch;
  batch.updateDevice(std::move(update));
  // What the edge kept goes back, so the cloud converges on it.
  if (rejected) batch.enqueue(edgeUpdatedItem(id, d));
  std::string eventId = j.find("event_id") != j.end() && j["event_id"].is_string()
                            ? j["event_id"].get<std::string>()
                            : newEventId();
  commit(id, std::move(batch), rejected,
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

void TwinServiceImpl::onCloudTwinMessage(const cloudhub::CloudTwinMessage& m) {
  if (stopping_) return;
  std::function<void(core::Status)> done = m.done;
  auto fail = [&](const core::Status& s) {
    log_.warn("cloud ", m.envelope.route.operation, " of ", m.envelope.route.resource,
              " not applied: ", s.message());
    if (done) done(s);
  };
  const std::string& resource = m.envelope.route.resource;
  if (resource == "membership") return onCloudMembership(m.envelope.content, std::move(done));
  constexpr std::string_view kPrefix = "device/", kSuffix = "/twin/cloud_updated";
  if (resource.size() <= kPrefix.size() + kSuffix.size() || !resource.starts_with(kPrefix) ||
      !resource.ends_with(kSuffix)) {
    return fail(core::invalidArgument("not a twin resource"));
  }
  std::string cloudId =
      resource.substr(kPrefix.size(), resource.size() - kPrefix.size() - kSuffix.size());
  std::string id = boundDeviceFor(cloudId);
  if (id.empty()) return fail(core::notFound("device " + cloudId + " is not bound to this node"));
  core::Status s = applyCloudTwinNow(id, m.envelope.content, done);
  if (!s.isOk()) fail(s);
}

// KubeEdge up to 1.14 sent a device's twin inside the membership update that bound it. Here Device
// objects bind devices; the twins in `added_devices` of devices bound here follow the version rule
// like cloud_updated. Devices not bound here are skipped (their Device object binds them), and
// removed_devices are left to the Device object's deletion.
void TwinServiceImpl::onCloudMembership(const std::string& content,
                                        std::function<void(core::Status)> done) {
  json j = json::parse(content, nullptr, false);
  if (j.is_string()) j = json::parse(j.get<std::string>(), nullptr, false);  // JSON in a string
  if (!j.is_object()) {
    if (done) done(core::invalidArgument("the membership update is not a JSON object"));
    return;
  }
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
        log_.info("cloud membership update names device ", cloudId,
                  ", which no Device object binds to this node; its twin is not kept");
        continue;
      }
      ++pending->left;
      std::function<void(core::Status)> one = finishOne;
      core::Status s = applyCloudTwinNow(id, json{{"twin", *twinIt}}.dump(), one);
      if (!s.isOk()) {
        log_.warn("cloud twin for ", id, " in a membership update not applied: ", s.message());
        finishOne(s);
      }
    }
  }
  finishOne(core::okStatus());
}

}  // namespace outpost::twin
