#pragma once
// TwinService: KubeEdge-compatible device twins on the local MQTT broker (PROTOCOL.md §2), kept in
// the store and synced to the cloud through the outbox (the store announces new rows on the bus,
// metadb::kOutboxChanged). Only agent/ (and tests) build one; agent/ also hands it the cloud's
// twin messages (applyCloudTwin).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/core/status.h"
#include "outpost/metadb/store.h"

namespace outpost::twin {

// How a device id appears in topics: "<namespace>/<name>" (KubeEdge 1.17+, two topic segments) or
// "<name>" (up to 1.16, one segment).
enum class DeviceIdForm { kNamespaced, kName };

struct TwinOptions {
  std::string nodeName;                         // devices whose spec.nodeName is this are served
  std::string broker = "tcp://127.0.0.1:1883";  // the local broker: tcp:// or ssl://
  std::string clientId;                         // empty: "outpost-twin-<nodeName>"
  std::string username;
  std::string password;
  std::string caFile, certFile, keyFile;  // TLS (ssl://)
  DeviceIdForm deviceIdForm = DeviceIdForm::kNamespaced;
  core::Duration keepAlive = std::chrono::seconds(15);
  core::Duration connectTimeout = std::chrono::seconds(10);
  // Reconnect back-off with full jitter: the n-th retry waits uniform [0, min(cap, base * 2^n)].
  core::Duration reconnectBase = std::chrono::seconds(1);
  core::Duration reconnectCap = std::chrono::seconds(30);
  size_t maxPayloadBytes = size_t{64} * 1024;  // bigger requests are answered 400
  // Limits (docs/device-twin.md): what would pass one is refused with a reason that names it (400
  // on a device's result topic), counted in outpost_twin_refused_total, and never stored. Lowering
  // one keeps what is already stored; only growth past it is refused.
  size_t maxDevices = 1000;             // devices bound to this node (config device.max_devices)
  size_t maxPropertiesPerDevice = 256;  // a twin's properties, deleted ones kept for the cloud
                                        // included (device.max_properties_per_device)
  size_t maxValueBytes = 512;  // a property value, KubeEdge's own bound (device.max_value_bytes)
};

// A twin-group message from the cloud, as the cloud routed it (KubeEdge 1.14's forms, PROTOCOL.md
// §2). Whichever link received it, agent/ hands it over in these terms.
struct CloudTwinMessage {
  // `device/<id>/twin/cloud_updated` (any operation): content {"twin": {prop: {expected, actual,
  // expected_version, actual_version, metadata}}}, applied per PROTOCOL.md §2's version rule; what
  // is rejected sends the edge's twin back through the outbox. <id> is the device id, or (KubeEdge
  // up to 1.16 while ids are namespaced) the name of the one bound device of that name.
  // `membership` with operation `update`: content {"added_devices": [{"id", "name", "twin"?}],
  // "removed_devices"}; the twins of added devices bound here follow the same rule, the rest is
  // left to the Device objects.
  std::string resource;
  std::string operation;
  std::string content;  // JSON, or a JSON string holding it (as KubeEdge sends it)
};

// What `outpostctl status` shows of the twins.
struct TwinStatus {
  bool connected = false;
  std::string broker;
  std::string lastError;
  int64_t devices = 0;
  int64_t updatesOk = 0;
  int64_t updatesFailed = 0;
  int64_t reconnects = 0;
};

class TwinService {
 public:
  virtual ~TwinService() = default;
  // Loads devices and twins from the store, reconciles them with the Device objects, and starts
  // connecting to the broker in the background (an absent broker is not an error).
  virtual core::Status start() = 0;
  // Disconnects and stops the service's thread. Idempotent.
  virtual void stop() = 0;
  virtual TwinStatus status() const = 0;
  // True when the service's thread answers within `timeout`.
  virtual bool alive(std::chrono::milliseconds timeout) = 0;
  // Applies a twin-group message from the cloud. Callable from any thread; `done` (may be empty)
  // runs once on the twin loop: ok once the effect is committed (also when the version rule
  // rejected a value: the edge's twin is then on its way back), else the error that kept the
  // message out (a device not bound here, content that is not a twin, a limit), which is logged
  // here (and counted when a limit refused it). It does not run when the service stops first.
  virtual void applyCloudTwin(CloudTwinMessage message, std::function<void(core::Status)> done) = 0;
};
using TwinServicePtr = std::unique_ptr<TwinService>;

TwinServicePtr makeTwinService(TwinOptions options, metadb::Store& store, core::Bus& bus,
                               core::Clock& clock, core::Logging& logging,
                               core::MetricsRegistry& metrics);

}  // namespace outpost::twin
