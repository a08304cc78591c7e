#pragma once
// Value types of the store: desired resources, outbox items, devices and twin properties.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/clock.h"
#include "outpost/core/status.h"

namespace outpost::metadb {

// The three parts of a resource key "<ns>/<type>/<name>". The namespace may be empty
// (cluster-scoped objects); type and name may not. The name is everything after the second '/'.
struct KeyParts {
  std::string ns;
  std::string type;
  std::string name;
};

// Splits a resource key, or says why it is not one.
inline core::Result<KeyParts> parseKey(std::string_view key) {
  auto first = key.find('/');
  auto second = first == std::string_view::npos ? first : key.find('/', first + 1);
  if (second == std::string_view::npos || second == first + 1 || second + 1 == key.size()) {
    return core::invalidArgument("resource key '" + std::string(key) +
                                 "' is not of the form <namespace>/<type>/<name>");
  }
  return KeyParts{std::string(key.substr(0, first)),
                  std::string(key.substr(first + 1, second - first - 1)),
                  std::string(key.substr(second + 1))};
}

inline std::string makeKey(std::string_view ns, std::string_view type, std::string_view name) {
  std::string key;
  key.reserve(ns.size() + type.size() + name.size() + 2);
  key.append(ns).append("/").append(type).append("/").append(name);
  return key;
}

// A desired resource as stored.
struct Resource {
  std::string key;  // "<ns>/<type>/<name>"
  std::string ns;
  std::string type;
  std::string name;
  std::string uid;
  int64_t version = 0;  // the resource version, compared as an integer
  std::string object;   // the object's JSON, as received
  std::string origin;   // who sent it: "cloud", "mqtt", "local", ...
  core::WallTime updated;
};

// One change to a desired resource, as the cloud sends it.
struct ResourceChange {
  enum class Kind { kUpsert, kDelete };
  Kind kind = Kind::kUpsert;
  std::string key;  // "<ns>/<type>/<name>"
  // Decimal, as KubeEdge sends it; may be empty only for a delete. A delete without a version
  // (an MQTT scope's retained object cleared) deletes the stored object only when it came from the
  // same origin: kStale when another origin's object is stored.
  std::string version;
  std::string uid;
  std::string object;  // JSON; ignored for a delete
  std::string origin;
};

// What became of one change.
enum class ApplyOutcome {
  kApplied,  // stored: the version was newer than anything seen for the key
  kStale,    // dropped: the key already had this version or a newer one (or a newer delete)
  kDeleted,  // the key is now deleted (also when it was absent or already deleted)
};

// An item to send to the cloud. One row per (kind, key): a newer item replaces an unsent older one.
struct OutboxItem {
  std::string kind;  // e.g. "podpatch", "ack", "twin"
  std::string key;   // the object it is about
  std::string payload;
  int priority = 0;  // higher goes first and is dropped last
};

// Names one version of one outbox row; acking or retrying an older version of a row does nothing.
struct OutboxRef {
  int64_t id = 0;
  int64_t generation = 0;
  friend bool operator==(const OutboxRef&, const OutboxRef&) = default;
};

// An outbox row as read back.
struct OutboxEntry {
  OutboxRef ref;
  std::string kind;
  std::string key;
  std::string payload;
  int priority = 0;
  int attempts = 0;  // failed sends of this generation
  core::WallTime nextAttempt;
  core::WallTime created;  // when the (kind, key) row was first queued
};

struct OutboxStats {
  int64_t rows = 0;
  int64_t bytes = 0;    // payload bytes
  int64_t dropped = 0;  // rows dropped by the quota since the store was created
};

// A device the node serves.
struct Device {
  std::string id;  // "<ns>/<name>" or "<name>", as the topic tree names it
  std::string name;
  std::string description;
  std::string state;       // online, offline, ok, unknown, disconnected, unhealthy
  std::string lastOnline;  // as reported, e.g. "2024-05-01 10:00:00"
  std::string model;
  std::string object;  // the Device object's JSON from the cloud, if any
};

// Counters that order updates of one side of a twin property (cloud link only).
struct VersionVector {
  int64_t cloud = 0;
  int64_t edge = 0;
  friend bool operator==(const VersionVector&, const VersionVector&) = default;
};

struct TwinValue {
  std::string value;
  int64_t timestampMs = 0;  // the agent's clock when the value was stored
  friend bool operator==(const TwinValue&, const TwinValue&) = default;
};

// One property of a device twin.
struct TwinProperty {
  std::string name;
  std::string type;  // string, int, integer, float, boolean
  bool optional = true;
  std::optional<TwinValue> expected;
  std::optional<TwinValue> actual;
  VersionVector expectedVersion;
  VersionVector actualVersion;
  friend bool operator==(const TwinProperty&, const TwinProperty&) = default;
};

// One atomic change to a device and its twin.
struct DeviceUpdate {
  std::string deviceId;
  bool remove = false;            // removes the device and every property (the rest is ignored)
  std::optional<Device> device;   // creates or replaces the device record
  std::vector<TwinProperty> set;  // properties created or replaced whole
  std::vector<std::string> removeProperties;
};

}  // namespace outpost::metadb
