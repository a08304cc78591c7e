#pragma once
// The labels and annotations deploy puts on the sandboxes and containers it asks for: how it finds
// its own again (after an agent restart too) and what each was made from.

#include <optional>
#include <string>

#include "outpost/deploy/runtime.h"

namespace outpost::deploy {

inline constexpr const char* kManaged = "outpost.io/managed";
inline constexpr const char* kPodUid = "outpost.io/pod-uid";
inline constexpr const char* kPodKey = "outpost.io/pod-key";
inline constexpr const char* kSandboxHash = "outpost.io/sandbox-hash";
inline constexpr const char* kContainerName = "outpost.io/container";
inline constexpr const char* kContainerHash = "outpost.io/container-hash";
inline constexpr const char* kGrace = "outpost.io/grace-seconds";

// The value of `key` in `labels`, or "".
inline std::string label(const Labels& labels, const char* key) {
  auto it = labels.find(key);
  return it == labels.end() ? std::string() : it->second;
}

// A pod's store key ("<ns>/pod/<name>") as a label value, which cannot hold a '/'.
std::string labelValue(const std::string& key);
// labelValue() undone ("<ns>.pod.<name>" back to "<ns>/pod/<name>"; namespaces hold no dots);
// nullopt for a value not of that form.
std::optional<std::string> keyFromLabel(const std::string& value);

}  // namespace outpost::deploy
