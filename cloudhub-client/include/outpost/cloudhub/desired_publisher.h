#pragma once
// DesiredPublisher: the cloud side of the MQTT scheme, for small fleets, demos and tests
// (outpostctl apply/delete). Publishes desired objects retained and keeps each scope's manifest.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "outpost/cloudhub/envelope.h"
#include "outpost/core/status.h"

namespace outpost::cloudhub {

struct PublisherOptions {
  std::string broker;
  std::string prefix = "outpost/v1";
  Encoding encoding = Encoding::kJson;
  std::string username, password;
  std::string caFile, certFile, keyFile;
  std::chrono::milliseconds timeout{10000};
  // How long to wait for the retained manifest after subscribing (absent means none yet).
  std::chrono::milliseconds manifestWait{500};
};

// Whom desired state is for: one node, or every node of a group.
struct Scope {
  enum class Kind { kNode, kGroup };
  Kind kind = Kind::kNode;
  std::string name;
};

// One object: its key "<ns>/<type>/<name>" and its JSON.
struct DesiredObject {
  std::string key;
  std::string json;
};

// What apply() did with one object.
struct Published {
  std::string key;
  std::string resourceVersion;
  std::string msgId;
};

class DesiredPublisher {
 public:
  static core::Result<std::unique_ptr<DesiredPublisher>> connect(const PublisherOptions& options);
  virtual ~DesiredPublisher() = default;

  // Publishes each object (retained) with a resource version newer than the manifest's, then the
  // updated manifest. Objects keep a stable uid derived from scope and key.
  virtual core::Result<std::vector<Published>> apply(const Scope& scope,
                                                     const std::vector<DesiredObject>& objects) = 0;
  // Clears each object's retained message and removes it from the manifest. Returns the keys that
  // were listed (absent keys are not an error; they are simply not returned).
  virtual core::Result<std::vector<std::string>> remove(const Scope& scope,
                                                        const std::vector<std::string>& keys) = 0;
  // Subscribes to the manifests of many scopes at once (their exact topics, 200 per SUBSCRIBE)
  // and waits `manifestWait` once for the retained ones: apply() and remove() on these scopes then
  // read the manifest they hold without waiting again (a rollout touches hundreds of nodes).
  virtual core::Status prefetchManifests(const std::vector<Scope>& scopes) = 0;
};

}  // namespace outpost::cloudhub
