#pragma once
// The cloud door: what a cloud message may change in the store, and which messages are the device
// twins' (both links, both protocols).

#include <algorithm>
#include <string>
#include <string_view>

#include "outpost/cloudhub/envelope.h"
#include "outpost/core/status.h"
#include "outpost/metadb/store.h"
#include "outpost/metadb/types.h"
#include "outpost/validation/validation.h"

namespace outpost::cloudhub {

inline bool isDecimal(std::string_view s) {
  return !s.empty() && s.size() <= 18 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The store change a cloud message asks for: insert, update and patch carry the object (its
// resource version from the header, else from metadata.resourceVersion; its uid from metadata);
// delete withdraws it (a delete's version may be absent). Refused with the reason otherwise.
inline core::Result<metadb::ResourceChange> resourceChangeFrom(const Envelope& env,
                                                               const std::string& key,
                                                               const std::string& origin) {
  metadb::ResourceChange change;
  change.key = key;
  change.origin = origin;
  const std::string& op = env.route.operation;
  bool isDelete = op == "delete";
  if (!isDelete && op != "insert" && op != "update" && op != "patch")
    return core::invalidArgument("operation \"" + validation::printable(op) +
                                 "\" cannot carry desired state");
  change.kind =
      isDelete ? metadb::ResourceChange::Kind::kDelete : metadb::ResourceChange::Kind::kUpsert;
  std::string version = env.header.resourceVersion;
  auto object = contentObject(env);
  if (!object && !isDelete) return core::invalidArgument("content is not a JSON object");
  auto parts = metadb::parseKey(key);
  if (!parts.isOk()) return parts.status();
  if (isDelete)
    OUTPOST_RETURN_IF_ERROR(validation::desiredKey(parts->ns, parts->type, parts->name));
  if (object) {
    // The door: nothing is stored that could later be turned into a host path, or that lies about
    // the key it is stored under (docs/security.md). The same pass finds the uid and version. A
    // delete's object only names what it removes: its key was checked above.
    auto facts = isDelete ? validation::objectFacts(*object)
                          : validation::desiredObject(parts->ns, parts->type, parts->name, *object);
    if (!facts.isOk()) return facts.status();
    if (version.empty() && facts->resourceVersion) version = std::move(*facts->resourceVersion);
    if (facts->uid) change.uid = std::move(*facts->uid);
    if (!isDelete) change.object = std::move(*object);
  }
  if ((!isDelete || !version.empty()) && !isDecimal(version))
    return core::invalidArgument("resource version \"" + validation::printable(version) +
                                 "\" is not a decimal number");
  change.version = version;
  return change;
}

// The twin-group messages of KubeEdge 1.14 that go to the twins over kCloudTwinMessages:
// `device/<id>/twin/cloud_updated`, and operation `update` on resource `membership`.
inline bool isCloudTwinMessage(const Route& r) {
  constexpr std::string_view kPrefix = "device/", kSuffix = "/twin/cloud_updated";
  std::string_view res = r.resource;
  if (res == "membership") return r.operation == "update";
  return res.size() > kPrefix.size() + kSuffix.size() && res.starts_with(kPrefix) &&
         res.ends_with(kSuffix);
}

}  // namespace outpost::cloudhub
