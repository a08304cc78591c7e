#pragma once
// Checking a downloaded package before anything installs it: its SHA-256 against the object's, and
// an Ed25519 signature over that digest made by a key of upgrade.trusted_keys (OpenSSL).

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::upgrade {

// Ed25519 public keys the agent accepts package signatures from.
struct TrustedKeys {
  std::vector<std::array<uint8_t, 32>> keys;
};

// Each entry is a PEM public key ("-----BEGIN PUBLIC KEY-----", as `openssl pkey -pubout` writes
// it) or the base64 of the raw 32-byte key. INVALID_ARGUMENT naming the entry (by index) that is
// neither, or a key that is not Ed25519.
core::Result<TrustedKeys> parseTrustedKeys(const std::vector<std::string>& entries);

// The SHA-256 of a file, as 32 bytes.
core::Result<std::array<uint8_t, 32>> sha256File(const std::filesystem::path& path);
std::string toHex(const std::array<uint8_t, 32>& digest);

// OK when the file's SHA-256 is `sha256Hex` and `signatureB64` is an Ed25519 signature of that
// digest (the 32 bytes) by one of `keys`. Otherwise DATA_LOSS for a digest that differs,
// PERMISSION_DENIED for a signature no trusted key made (or no key at all), INVALID_ARGUMENT for a
// signature that is not base64 of 64 bytes.
core::Status verifyPackage(const std::filesystem::path& path, std::string_view sha256Hex,
                           std::string_view signatureB64, const TrustedKeys& keys);

}  // namespace outpost::upgrade
