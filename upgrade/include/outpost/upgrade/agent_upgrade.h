#pragma once
// AgentUpgrade: the desired object (key "<ns>/agentupgrade/<name>") that tells a node to upgrade
// its own agent, parsed and checked. Nothing of it is used before it passed here: every string
// comes from the cloud (docs/operations.md, "In-band upgrade").

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::upgrade {

// One package file of a version, for one package format and machine architecture.
struct Package {
  std::string format;     // "deb" or "rpm"
  std::string arch;       // as the format names it: amd64, arm64 (deb); x86_64, aarch64 (rpm)
  std::string url;        // http:// or https://
  std::string sha256;     // the file's SHA-256, 64 lower-case hex digits
  std::string signature;  // base64 of the Ed25519 signature over the file's SHA-256 (32 bytes)
};

// A version of the agent and its package files.
struct PackageSet {
  std::string version;  // the package's version as dpkg or rpm reports it, e.g. "0.2.0-1"
  std::vector<Package> packages;
};

struct AgentUpgrade {
  PackageSet target;
  // The packages of the version the node runs now: what a rollback reinstalls when the node has
  // kept none itself (a node installed from a repository). Optional.
  std::optional<PackageSet> rollback;
};

inline constexpr size_t kMaxVersion = 64;
inline constexpr size_t kMaxUrl = 2048;

// Parses the object's JSON (spec.version, spec.packages[], spec.rollback); INVALID_ARGUMENT naming
// the first field that is missing or wrong.
core::Result<AgentUpgrade> parseAgentUpgrade(std::string_view json);

// A package version: an optional epoch ("1:"), then a digit, then letters, digits and ". + ~ _ -",
// at most 64 characters (what Debian and rpm versions are made of; never a space or '/').
core::Status checkVersion(std::string_view what, std::string_view version);
// An http:// or https:// URL: a host name or IP address (IPv6 in brackets), an optional port, and
// a path of URL characters only (no space, no control character, no backslash), at most 2048.
core::Status checkUrl(std::string_view what, std::string_view url);

// The package of `set` for this machine, or NOT_FOUND naming what the set offers.
core::Result<Package> pickPackage(const PackageSet& set, std::string_view format,
                                  std::string_view arch);

}  // namespace outpost::upgrade
