// Requests from devices on the local broker: twin update and get, state update, membership get.
#include <algorithm>
#include <cctype>
#include <ctime>

#include "outpost/twin/rules.h"
#include "service.h"

namespace outpost::twin {

namespace {

std::string eventIdOf(const json& j) {
  if (!j.is_object()) return {};
  auto it = j.find("event_id");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// One property of a twin update request, validated.
struct PropertyRequest {
  std::string name;
  bool remove = false;
  std::optional<std::string> expected, actual, type;
  std::optional<bool> optional;
};

std::optional<std::string> readProperty(const std::string& name, const json& prop,
                                        PropertyRequest& out) {
  out.name = name;
  std::string quoted = "\"" + validation::printable(name) + "\"";
  if (!validPropertyName(name))
    return "property name " + quoted + " " + std::string(kPropertyNameRule);
  if (prop.is_null()) {
    out.remove = true;
    return std::nullopt;
  }
  if (!prop.is_object()) return "property " + quoted + " is not an object";
  for (auto [side, target] : {std::pair{"expected", &out.expected}, {"actual", &out.actual}}) {
    auto it = prop.find(side);
    if (it == prop.end() || it->is_null()) continue;
    if (!it->is_object()) return "property " + quoted + ": " + side + " is not an object";
    auto v = it->find("value");
    if (v == it->end() || !v->is_string())
      return "property " + quoted + ": " + side + ".value is not a string";
    *target = v->get<std::string>();
  }
  if (auto o = prop.find("optional"); o != prop.end() && !o->is_null()) {
    if (!o->is_boolean()) return "property " + quoted + ": optional is not a boolean";
    out.optional = o->get<bool>();
  }
  if (auto m = prop.find("metadata"); m != prop.end() && !m->is_null()) {
    if (!m->is_object()) return "property " + quoted + ": metadata is not an object";
    if (auto t = m->find("type"); t != m->end() && !t->is_null()) {
      if (!t->is_string()) return "property " + quoted + ": type is not a string";
      if (!validType(t->get<std::string>()))
        return "property " + quoted + ": type \"" + validation::printable(t->get<std::string>()) +
               "\" is not valid (string, int, integer, float, boolean)";
      out.type = t->get<std::string>();
    }
  }
  return std::nullopt;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string formatTime(core::WallTime t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace

core::Result<json> TwinServiceImpl::parseDeviceRequest(const Request& req,
                                                       const std::string& payload) {
  std::string_view topic = req.resultTopic;
  topic.remove_suffix(std::string_view("/result").size());
  auto j =
      parseOutside("request on " + validation::printable(topic), payload, opts_.maxPayloadBytes);
  if (!j.isOk() && j.status().code() == core::Code::kResourceExhausted)
    return core::invalidArgument("the payload is refused: " + j.status().message());
  if (!j.isOk() || !j->is_object())
    return core::invalidArgument("the payload is not a JSON object");
  return j;
}

int TwinServiceImpl::notBoundCode(const std::string& id) const {
  return overLimit_.count(id) ? 400 : 404;
}

std::string TwinServiceImpl::notBoundReason(const std::string& id) const {
  if (overLimit_.count(id)) {
    return "device " + id + " is not served: this node serves its limit of " +
           std::to_string(opts_.maxDevices) + " devices (device.max_devices)";
  }
  return "device " + id + " is not bound to this node";
}

void TwinServiceImpl::answerError(const Request& req, int code, const std::string& reason) {
  log_.debug("answering ", code, " on ", validation::printable(req.resultTopic), ": ", reason);
  publish(req.resultTopic,
          {{"event_id", req.eventId}, {"timestamp", nowMs()}, {"code", code}, {"reason", reason}});
}

json TwinServiceImpl::twinJson(const DeviceEntry& d, PropertyView view, bool includeDeleted) const {
  json twin = json::object();
  for (const auto& [name, p] : d.twin) {
    if (!includeDeleted && isDeleted(p)) continue;
    twin[name] = propertyJson(p, view);
  }
  return twin;
}

metadb::OutboxItem TwinServiceImpl::edgeUpdatedItem(const std::string& id, const DeviceEntry& d) {
  json content = {{"event_id", newEventId()},
                  {"timestamp", nowMs()},
                  {"twin", twinJson(d, {true, true, true}, true)}};
  return {"twin", "device/" + id + "/twin/edge_updated", content.dump(), 0};
}

void TwinServiceImpl::publishDocument(
    const std::string& id, const std::string& eventId,
    const std::map<std::string, std::optional<metadb::TwinProperty>>& before,
    const DeviceEntry& after) {
  json twin = json::object();
  for (const auto& [name, last] : before) {
    auto it = after.twin.find(name);
    std::optional<metadb::TwinProperty> current;
    if (it != after.twin.end()) current = it->second;
    twin[name] = {{"last", documentSide(last)}, {"current", documentSide(current)}};
  }
  publish(deviceTopic(id, "twin/update/document"),
          {{"event_id", eventId}, {"timestamp", nowMs()}, {"twin", twin}});
}

void TwinServiceImpl::publishDeltaIfAny(const std::string& id, const DeviceEntry& d) {
  json twin = json::object();
  json delta = json::object();
  for (const auto& [name, p] : d.twin) {
    if (isDeleted(p) || !p.expected) continue;
    twin[name] = propertyJson(p);
    if (!p.actual || p.actual->value != p.expected->value) delta[name] = p.expected->value;
  }
  if (delta.empty()) return;
  publish(deviceTopic(id, "twin/update/delta"),
          {{"event_id", newEventId()}, {"timestamp", nowMs()}, {"twin", twin}, {"delta", delta}});
}

void TwinServiceImpl::onTwinUpdate(const std::string& id, const std::string& payload) {
  Request req{id, deviceTopic(id, "twin/update/result"), ""};
  auto fail = [&](int code, const std::string& reason) {
    updatesError_.inc();
    answerError(req, code, reason);
  };
  auto parsed = parseDeviceRequest(req, payload);
  if (!parsed.isOk()) return fail(400, parsed.status().message());
  const json& j = *parsed;
  req.eventId = eventIdOf(j);
  auto dev = devices_.find(id);
  if (dev == devices_.end()) return fail(notBoundCode(id), notBoundReason(id));
  auto twinIt = j.find("twin");
  if (twinIt == j.end() || !twinIt->is_object() || twinIt->empty())
    return fail(400, "the request has no twin");

  DeviceEntry& d = dev->second;
  std::vector<PropertyRequest> props;
  size_t newNames = 0;
  for (const auto& [name, value] : twinIt->items()) {
    PropertyRequest pr;
    if (auto err = readProperty(name, value, pr)) return fail(400, *err);
    for (auto [side, v] : {std::pair{"expected", &pr.expected}, {"actual", &pr.actual}}) {
      if (!*v) continue;
      bool tooLong = false;
      std::string err = checkValue(pr.name, side, **v, tooLong);
      if (err.empty()) continue;
      if (tooLong) refused(Refusal::kMaxValueBytes, "twin update of " + id, err);
      return fail(400, err);
    }
    if (!pr.remove && !d.twin.count(pr.name)) ++newNames;
    props.push_back(std::move(pr));
  }

  int64_t now = nowMs();
  std::map<std::string, std::optional<metadb::TwinProperty>> before;
  std::vector<metadb::TwinProperty> next;
  for (const auto& pr : props) {
    auto it = d.twin.find(pr.name);
    std::optional<metadb::TwinProperty> last;
    if (it != d.twin.end()) last = it->second;
    bool existed = last && !isDeleted(*last);
    if (pr.remove) {
      before[pr.name] = last;
      if (!existed) continue;
      // Kept as a "deleted" property so the cloud hears of it; devices never see it.
      metadb::TwinProperty p = *last;
      p.type = std::string(kDeletedType);
      p.expected.reset();
      p.actual.reset();
      p.expectedVersion.edge++;
      p.actualVersion.edge++;
      next.push_back(std::move(p));
      continue;
    }
    metadb::TwinProperty p;
    if (last) p = *last;
    p.name = pr.name;
    if (!existed) {
      p.expected.reset();
      p.actual.reset();
      p.optional = true;
      p.type = "string";
    }
    if (pr.type) p.type = *pr.type;
    if (pr.optional) p.optional = *pr.optional;
    for (const auto* v : {&pr.expected, &pr.actual}) {
      if (*v && !valueMatchesType(**v, p.type)) {
        return fail(400, "property \"" + validation::printable(pr.name) + "\": value \"" +
                             validation::printable(**v) + "\" is not of type " + p.type);
      }
    }
    if (pr.expected) {
      p.expected = metadb::TwinValue{*pr.expected, now};
      p.expectedVersion.edge++;
    }
    if (pr.actual) {
      p.actual = metadb::TwinValue{*pr.actual, now};
      p.actualVersion.edge++;
    }
    before[pr.name] = last;
    next.push_back(std::move(p));
  }

  // Checked once the request is known to be valid, since makeRoom may drop deleted properties
  // (never one this request names).
  std::set<std::string> named;
  for (const auto& pr : props) named.insert(pr.name);
  std::vector<std::string> dropped;
  if (!makeRoom(d, newNames, named, dropped)) {
    std::string reason = "device " + id + " has " + std::to_string(d.twin.size()) +
                         " properties; " + std::to_string(newNames) +
                         " new would pass the limit of " +
                         std::to_string(opts_.maxPropertiesPerDevice) +
                         " properties per device (device.max_properties_per_device)";
    refused(Refusal::kMaxProperties, "twin update of " + id, reason);
    return fail(400, reason);
  }

  // The answer names every requested property, with only the sides it updated.
  json resultTwin = json::object();
  for (const auto& pr : props) {
    if (pr.remove) {
      resultTwin[pr.name] = nullptr;
      continue;
    }
    auto it = std::find_if(next.begin(), next.end(),
                           [&](const metadb::TwinProperty& p) { return p.name == pr.name; });
    resultTwin[pr.name] = propertyJson(*it, {pr.expected.has_value(), pr.actual.has_value()});
  }

  metadb::DeviceUpdate update;
  update.deviceId = id;
  update.set = next;
  update.removeProperties = std::move(dropped);
  for (auto& p : next) d.twin[p.name] = p;  // optimistic: later requests build on this one
  metadb::WriteBatch batch;
  batch.updateDevice(std::move(update));
  bool changed = !next.empty();
  if (changed) batch.enqueue(edgeUpdatedItem(id, d));
  json result = {{"event_id", req.eventId}, {"timestamp", now}, {"twin", resultTwin}};
  commit(
      id, std::move(batch),
      [this, req, result = std::move(result), before = std::move(before), changed](core::Status s) {
        if (!s.isOk()) {
          updatesError_.inc();
          return answerError(req, 500, "storing the twin failed: " + s.message());
        }
        updatesOk_.inc();
        publish(req.resultTopic, result);
        auto it = devices_.find(req.deviceId);
        if (!changed || it == devices_.end()) return;
        publishDocument(req.deviceId, req.eventId, before, it->second);
        publishDeltaIfAny(req.deviceId, it->second);
      });
}

void TwinServiceImpl::onTwinGet(const std::string& id, const std::string& payload) {
  Request req{id, deviceTopic(id, "twin/get/result"), ""};
  auto parsed = parseDeviceRequest(req, payload);
  if (!parsed.isOk()) return answerError(req, 400, parsed.status().message());
  const json& j = *parsed;
  req.eventId = eventIdOf(j);
  auto dev = devices_.find(id);
  if (dev == devices_.end()) return answerError(req, notBoundCode(id), notBoundReason(id));
  publish(req.resultTopic, {{"event_id", req.eventId},
                            {"timestamp", nowMs()},
                            {"twin", twinJson(dev->second, {}, false)}});
}

void TwinServiceImpl::onStateUpdate(const std::string& id, const std::string& payload) {
  Request req{id, deviceTopic(id, "state/update/result"), ""};
  auto parsed = parseDeviceRequest(req, payload);
  if (!parsed.isOk()) return answerError(req, 400, parsed.status().message());
  const json& j = *parsed;
  req.eventId = eventIdOf(j);
  auto dev = devices_.find(id);
  if (dev == devices_.end()) return answerError(req, notBoundCode(id), notBoundReason(id));
  auto st = j.find("state");
  if (st == j.end() || !st->is_string()) return answerError(req, 400, "the request has no state");
  std::string state = lower(st->get<std::string>());
  static const std::set<std::string> kStates = {"online",  "offline",      "ok",
                                                "unknown", "disconnected", "unhealthy"};
  if (!kStates.count(state))
    return answerError(
        req, 400, "state \"" + validation::printable(st->get<std::string>()) + "\" is not valid");

  DeviceEntry& d = dev->second;
  d.record.state = state;
  d.record.lastOnline = formatTime(clock_.wallNow());
  int64_t now = nowMs();
  json result = {
      {"event_id", req.eventId},
      {"timestamp", now},
      {"device",
       {{"name", d.record.name}, {"state", d.record.state}, {"last_online", d.record.lastOnline}}}};
  metadb::DeviceUpdate update;
  update.deviceId = id;
  update.device = d.record;
  metadb::WriteBatch batch;
  batch.updateDevice(std::move(update));
  // The cloud link carries the state result as a JSON string (PROTOCOL.md §2).
  batch.enqueue({"devicestatus", "device/" + id + "/state/update", json(result.dump()).dump(), 0});
  commit(id, std::move(batch), [this, req, result](core::Status s) {
    if (!s.isOk()) return answerError(req, 500, "storing the state failed: " + s.message());
    publish(req.resultTopic, result);
  });
}

json TwinServiceImpl::membershipEntry(const metadb::Device& d) const {
  json e = {{"id", d.id}, {"name", d.name}};
  if (!d.description.empty()) e["description"] = d.description;
  if (!d.state.empty()) e["state"] = d.state;
  if (!d.lastOnline.empty()) e["last_online"] = d.lastOnline;
  return e;
}

void TwinServiceImpl::onMembershipGet(const std::string& payload) {
  Request req{"", membershipTopic("get/result"), ""};
  auto parsed = parseDeviceRequest(req, payload);
  if (!parsed.isOk()) return answerError(req, 400, parsed.status().message());
  const json& j = *parsed;
  req.eventId = eventIdOf(j);
  json list = json::array();
  for (const auto& [id, d] : devices_) list.push_back(membershipEntry(d.record));
  publish(req.resultTopic, {{"event_id", req.eventId}, {"timestamp", nowMs()}, {"devices", list}});
}

}  // namespace outpost::twin
