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
#include "outpost/cloudhub/link.h"
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
  void applyCloudTwin(std::string deviceId, std::string content,
                      std::function<void(core::Status)> done) override;

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

  // ---- connection (service.cc)
  void connect();
  void onConnected();
  void onDown(const std::string& why);
  void onMessage(const std::string& topic, const std::string& payload);
  void publish(const std::string& topic, const json& payload);
  std::string deviceTopic(const std::string& id, const std::string& tail) const;
  std::string membershipTopic(const std::string& tail) const;

  // ---- store (service.cc)
  core::Status loadAll();
  void loadDevice(const std::string& id);
  // Writes `batch` for device `id` (empty id: no device); `after` runs on the loop after commit.
  void commit(const std::string& id, metadb::WriteBatch batch, bool outbox,
              std::function<void(core::Status)> after);
  void setDevicesGauge();

  // ---- device requests (device_handlers.cc)
  void onTwinUpdate(const std::string& id, const std::string& payload);
  void onTwinGet(const std::string& id, const std::string& payload);
  void onStateUpdate(const std::string& id, const std::string& payload);
  void onMembershipGet(const std::string& payload);
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
  void reconcileKey(const std::string& key);
  void bindDevice(const std::string& key, const std::string& id, const std::string& objectText,
                  const DeviceObject& obj);
  void unbindDevice(const std::string& id);
  std::string deviceIdFor(const std::string& ns, const std::string& name) const;
  void publishMembership(const std::vector<json>& added, const std::vector<json>& removed);
  json membershipEntry(const metadb::Device& d) const;
  core::Status applyCloudTwinNow(const std::string& id, const std::string& content,
                                 std::function<void(core::Status)>& done);
  // A KubeEdge 1.14 twin-group message that a cloud link received (cloud_updated, membership).
  void onCloudTwinMessage(const cloudhub::CloudTwinMessage& m);
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
  core::Subscription cloudTwinSub_;
  std::map<std::string, DeviceEntry> devices_;
  std::map<std::string, std::string> deviceKeys_;  // device id -> resource key it came from
  core::Backoff backoff_;
  std::mt19937_64 rng_;
  bool stopping_ = false;
  bool started_ = false;
  std::atomic<bool> connected_{false};
  // What was published while the broker was away (events after a restart, answers during an
  // outage), sent once connected again; the oldest go first past kMaxPending.
  std::deque<std::pair<std::string, std::string>> pending_;

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
};

}  // namespace outpost::twin
