#pragma once
// TwinServiceImpl: the twin's state (devices and their twins, cached from the store) and every
// handler, all on the service's own loop. Writes go to the store first; answers and events leave
// after the commit, so whatever a device was told survives a crash.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "codec.h"
#include "outpost/core/backoff.h"
#include "outpost/core/event_loop.h"
#include "outpost/mqttc/client.h"
#include "outpost/twin/twin_service.h"

namespace outpost::twin {

class TwinServiceImpl final : public TwinService {
 public:
  TwinServiceImpl(TwinOptions options, metadb::Store& store, core::Bus& bus, core::Clock& clock,
                  core::Logging& logging, core::MetricsRegistry& metrics);
  ~TwinServiceImpl() override;

  // TwinService
  core::Status start() override;
  void stop() override;
  TwinStatus status() const override;
  bool alive(std::chrono::milliseconds timeout) override;
  void applyCloudTwin(CloudTwinMessage message, std::function<void(core::Status)> done) override;

 private:
  struct DeviceEntry {
    metadb::Device record;
    std::map<std::string, metadb::TwinProperty> twin;  // deleted properties kept as "deleted"
    int inflight = 0;                                  // writes not yet committed
    bool reload = false;  // a write failed: reread from the store once none is in flight
  };
  // A request's address: which device, and where its answers go.
  struct Request {
    std::string deviceId;
    std::string resultTopic;
    std::string eventId;
  };

  // What a limit or a check refused (outpost_twin_refused_total{reason}).
  enum class Refusal { kJson, kMaxDevices, kMaxProperties, kMaxValueBytes, kDeviceId, kCount };

  // ---- connection (service.cc)
  void connect();
  void onConnected();
  void onDown(const std::string& why);
  void onMessage(const std::string& topic, const std::string& payload);
  void publish(const std::string& topic, const json& payload);
  std::string deviceTopic(const std::string& id, const std::string& tail) const;
  std::string membershipTopic(const std::string& tail) const;
  // OK, or why `id` (from a topic) cannot name a device: its parts must be a namespace (DNS-1123
  // label) and a name (DNS-1123 subdomain), as the Device objects that bind devices are named.
  core::Status checkTopicDeviceId(const std::string& id) const;

  // ---- limits (limits.cc)
  // Counts a refusal and logs it in one line (`what` and the reason already quoted with
  // validation::printable where they hold outside text).
  void refused(Refusal why, const std::string& what, const std::string& reason);
  // Parses outside JSON within the JSON limits; a text past them is refused, counted and logged.
  core::Result<json> parseOutside(const std::string& what, std::string_view text,
                                  size_t maxBytes = validation::JsonLimits{}.maxBytes,
                                  bool stringContent = false);
  // Whether `newNames` properties not yet in `d`'s twin fit under maxPropertiesPerDevice. A deleted
  // property (kept so the cloud hears of the deletion) not in `keep` gives its place to a new one
  // when the twin is full: those it drops are erased from `d.twin` and appended to `dropped` (to
  // remove from the store in the same batch).
  bool makeRoom(DeviceEntry& d, size_t newNames, const std::set<std::string>& keep,
                std::vector<std::string>& dropped);
  // "" when `value` fits the value rules, else the reason (naming device.max_value_bytes when it is
  // too long; then `tooLong` is set).
  std::string checkValue(const std::string& property, const char* side, const std::string& value,
                         bool& tooLong) const;
  // Keeps a Device object for this node that max_devices refused, so it is bound once a device
  // leaves; forgets it when its object is deleted or moves away.
  void deviceOverLimit(const metadb::KeyChange& key, const std::string& id);
  void bindWaiting();

  // ---- store (service.cc)
  core::Status loadAll();
  void loadDevice(const std::string& id);
  // Devices stored under the other device id form (device_id_form changed) move to their id in
  // this one with their twins (id_form.cc).
  void rekeyToForm();
  // Writes `batch` for device `id` (empty id: no device); `after` runs on the loop after commit.
  // What it queues in the outbox, the store announces (metadb::kOutboxChanged).
  void commit(const std::string& id, metadb::WriteBatch batch,
              std::function<void(core::Status)> after);
  void setDevicesGauge();

  // ---- device requests (device_handlers.cc)
  void onTwinUpdate(const std::string& id, const std::string& payload);
  void onTwinGet(const std::string& id, const std::string& payload);
  void onStateUpdate(const std::string& id, const std::string& payload);
  void onMembershipGet(const std::string& payload);
  // A device's request within the JSON limits and a JSON object, or the 400 reason.
  core::Result<json> parseDeviceRequest(const Request& req, const std::string& payload);
  // A request for a device not bound here: 400 naming device.max_devices when that limit keeps
  // it out, else 404.
  int notBoundCode(const std::string& id) const;
  std::string notBoundReason(const std::string& id) const;
  void answerError(const Request& req, int code, const std::string& reason);
  json twinJson(const DeviceEntry& d, PropertyView view, bool includeDeleted) const;
  void publishDocument(const std::string& id, const std::string& eventId,
                       const std::map<std::string, std::optional<metadb::TwinProperty>>& before,
                       const DeviceEntry& after);
  void publishDeltaIfAny(const std::string& id, const DeviceEntry& d);
  // The edge's whole twin, with versions, as the cloud's edge_updated message.
  metadb::OutboxItem edgeUpdatedItem(const std::string& id, const DeviceEntry& d);

  // ---- cloud side (cloud_sync.cc)
  void onKeysChanged(const metadb::KeysChanged& ev);
  void reconcileAll();
  // Binds, updates or unbinds the device of the Device object at `key` (its parts as the store
  // published them; the key string is not split again).
  void reconcileKey(const metadb::KeyChange& key);
  // The Device object under `key`, or nullopt (logged; counted when past the JSON limits).
  std::optional<DeviceObject> readDeviceObject(const std::string& key, const std::string& text);
  // Whether a Device object's key names a device id fit for topics and store keys (a namespace
  // that is a DNS-1123 label, a name that is a DNS-1123 subdomain); refused (counted, logged) if
  // not.
  bool checkObjectDeviceId(const std::string& key, const std::string& ns, const std::string& name);
  void bindDevice(const std::string& key, const std::string& id, const std::string& objectText,
                  const DeviceObject& obj);
  void unbindDevice(const std::string& id);
  std::string deviceIdFor(const std::string& ns, const std::string& name) const;
  void publishMembership(const std::vector<json>& added, const std::vector<json>& removed);
  json membershipEntry(const metadb::Device& d) const;
  core::Status applyCloudTwinNow(const std::string& id, const std::string& content,
                                 std::function<void(core::Status)>& done);
  // The same with the content parsed: an object with "twin" (and "event_id").
  core::Status applyCloudTwinJson(const std::string& id, const json& content,
                                  std::function<void(core::Status)>& done);
  // A KubeEdge 1.14 twin-group message from the cloud (cloud_updated, membership).
  void onCloudTwinMessage(const CloudTwinMessage& m, std::function<void(core::Status)> done);
  void onCloudMembership(const std::string& content, std::function<void(core::Status)> done);
  // The bound device a cloud message names: its id, or (for a one-segment name from KubeEdge up to
  // 1.16 while ids are namespaced) the one device of that name. Empty when there is none.
  std::string boundDeviceFor(const std::string& cloudId) const;

  std::string newEventId();
  int64_t nowMs() const { return core::toUnixMillis(clock_.wallNow()); }

  const TwinOptions opts_;
  metadb::Store& store_;
  core::Bus& bus_;
  core::Clock& clock_;
  core::Logger log_;
  core::EventLoop loop_;

  // Loop-owned state.
  metadb::StoreReaderPtr reader_;
  std::unique_ptr<mqttc::Client> client_;
  core::Subscription keysSub_;
  std::map<std::string, DeviceEntry> devices_;
  std::map<std::string, std::string> deviceKeys_;  // device id -> resource key it came from
  // Devices for this node that max_devices keeps out: id -> its object's key. Bounded by the Device
  // objects stored; an entry goes with its object.
  std::map<std::string, metadb::KeyChange> overLimit_;
  core::Backoff backoff_;
  std::mt19937_64 rng_;
  bool stopping_ = false;
  bool started_ = false;
  std::atomic<bool> connected_{false};
  // What was published while the broker was away (events after a restart, answers during an
  // outage), sent once connected again; the oldest go first past kMaxPending.
  std::deque<std::pair<std::string, std::string>> pending_;
  size_t pendingBytes_ = 0;  // payload bytes in pending_ (bounded by kMaxPendingBytes)

  // Store writes whose completion has not run yet: stop() waits for them, since the store posts
  // completions to our loop.
  std::mutex writesMu_;
  std::condition_variable writesCv_;
  int pendingWrites_ = 0;

  mutable std::mutex statusMu_;
  TwinStatus status_;

  core::Counter& updatesOk_;
  core::Counter& updatesError_;
  core::Gauge& devicesGauge_;
  core::Gauge& linkUp_;
  core::Counter* refused_[static_cast<size_t>(Refusal::kCount)];
};

}  // namespace outpost::twin
