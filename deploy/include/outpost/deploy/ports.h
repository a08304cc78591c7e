#pragma once
// The ports deploy needs from the rest of the agent: where desired pods come from and where
// status goes. agent/ adapts metadb and the outbox to them; tests use in-memory holders.

#include <optional>
#include <string>
#include <vector>

namespace outpost::deploy {

// One desired pod: its store key "<namespace>/pod/<name>", its Kubernetes Pod JSON and the
// resource version it is stored at ("" when unknown: the JSON's metadata.resourceVersion counts).
struct PodRecord {
  std::string key;
  std::string json;
  std::string version{};
};

// Read access to the desired state. Called on deploy's loop; must not block for long.
class DesiredPods {
 public:
  virtual ~DesiredPods() = default;
  // Every desired pod.
  virtual std::vector<PodRecord> listPods() = 0;
  // One object by key ("<ns>/pod/<name>", "<ns>/configmap/<name>", "<ns>/secret/<name>"): its
  // JSON, or nullopt when absent.
  virtual std::optional<std::string> getObject(const std::string& key) = 0;
  // One desired pod by key ("<ns>/pod/<name>") with its stored version; nullopt when absent.
  virtual std::optional<PodRecord> getPod(const std::string& key) {
    auto json = getObject(key);
    if (!json) return std::nullopt;
    return PodRecord{key, std::move(*json)};
  }
  // Every desired object of `type` (e.g. "imageprepull"), with its stored version.
  virtual std::vector<PodRecord> listObjects(const std::string& type) {
    (void)type;
    return {};
  }
  // False while the desired set is known to be incomplete: the store was recovered empty and the
  // cloud has not yet sent the whole set again. Pods with our labels that no desired pod names are
  // then kept running rather than removed as garbage (they may well still be wanted).
  virtual bool complete() { return true; }
  // A pod needs an object the store does not hold ("<ns>/configmap/<name>", "<ns>/secret/<name>"),
  // or, while complete() is false, a pod runs that no desired pod names ("<ns>/pod/<name>"): ask
  // the cloud for it. Must not block; what the cloud has arrives as a change of the desired state
  // (onDesiredChanged), which reconciles the pods concerned again. The reconciler asks at most
  // once per key per ReconcilerConfig::fetchMissingInterval.
  virtual void fetchMissing(const std::string& key) { (void)key; }
};

// What deploy keeps across restarts beyond the desired state (the on-site holds of
// `outpostctl hold`): small values by name. agent/ keeps them in the store's key-values. Called on
// deploy's loop.
class LocalState {
 public:
  virtual ~LocalState() = default;
  virtual std::optional<std::string> get(const std::string& name) = 0;
  // Durable soon after (a write of its own); a later put of the same name wins.
  virtual void put(const std::string& name, const std::string& value) = 0;
};

// Where deploy reports. Called on deploy's loop, only when something changed.
class StatusSink {
 public:
  virtual ~StatusSink() = default;
  // The Kubernetes PodStatus JSON of the pod stored at `key` ("<ns>/pod/<name>").
  virtual void podStatus(const std::string& key, const std::string& statusJson) = 0;
  // The pod at `key` is gone from the node (deleted and cleaned up).
  virtual void podRemoved(const std::string& key) = 0;
  // The pod at `key` with uid `uid`, being deleted (metadata.deletionTimestamp), has every
  // container stopped and its status reported: the cloud may now delete it for good (EdgeCore
  // asks for a delete with grace period 0 and a uid precondition). Once per pod uid.
  virtual void podTerminated(const std::string& key, const std::string& uid) {
    (void)key;
    (void)uid;
  }
  // The status JSON of another desired object deploy acts on (an `imageprepull`, docs/rollouts.md),
  // at `key` ("<ns>/<type>/<name>").
  virtual void objectStatus(const std::string& key, const std::string& statusJson) {
    (void)key;
    (void)statusJson;
  }
  // The Kubernetes NodeStatus JSON of this node.
  virtual void nodeStatus(const std::string& statusJson) = 0;
};

}  // namespace outpost::deploy
