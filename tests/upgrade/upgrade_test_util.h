#pragma once
// What the upgrade tests share: an Ed25519 release key made with the openssl command, and package
// files signed with it the way docs/operations.md tells a release manager to.

#include <filesystem>
#include <string>

#include "support/test_util.h"

namespace outpost::test {

class ReleaseKey {
 public:
  // Makes a key pair under `dir` (openssl genpkey -algorithm ed25519).
  ReleaseKey(const std::filesystem::path& dir, const std::string& name);
  const std::string& publicPem() const { return publicPem_; }
  // The raw 32-byte public key, base64.
  std::string publicRawBase64() const;
  // base64 of `openssl pkeyutl -sign -rawin` over the file's SHA-256 (32 bytes).
  std::string sign(const std::filesystem::path& file) const;

 private:
  std::filesystem::path dir_, key_;
  std::string publicPem_;
};

// The openssl command: run() takes a path, not a name to look up.
inline const std::string kOpenssl = "/usr/bin/openssl";

// `openssl dgst -sha256` of a file, hex.
std::string sha256Hex(const std::filesystem::path& file);

}  // namespace outpost::test
