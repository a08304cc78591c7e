#include "outpost/upgrade/verify.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>
#include <memory>

// OpenSSL's BIO macros are C casts.
#pragma GCC diagnostic ignored "-Wold-style-cast"

namespace outpost::upgrade {

namespace {

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// Strict base64 (the standard alphabet, padded); nullopt when `in` is not.
std::optional<std::string> base64Decode(std::string_view in) {
  std::string clean;
  for (char c : in)
    if (c != '\n' && c != '\r') clean += c;
  if (clean.empty() || clean.size() % 4 != 0) return std::nullopt;
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t pad = 0;
  if (clean.ends_with("==")) {
    pad = 2;
  } else if (clean.ends_with("=")) {
    pad = 1;
  }
  if (clean.substr(0, clean.size() - pad).find('=') != std::string::npos) return std::nullopt;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string opensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

core::Result<std::array<uint8_t, 32>> rawKeyOf(EVP_PKEY* key, const std::string& what) {
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519)
    return core::invalidArgument(what + ": not an Ed25519 public key");
  std::array<uint8_t, 32> raw{};
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(key, raw.data(), &len) != 1 || len != raw.size())
    return core::invalidArgument(what + ": cannot read the Ed25519 key: " + opensslError());
  return raw;
}

}  // namespace

core::Result<TrustedKeys> parseTrustedKeys(const std::vector<std::string>& entries) {
  TrustedKeys out;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string what = "upgrade.trusted_keys[" + std::to_string(i) + "]";
    const std::string& e = entries[i];
    if (e.find("-----BEGIN") != std::string::npos) {
      std::unique_ptr<BIO, decltype(&BIO_free)> bio(
          BIO_new_mem_buf(e.data(), static_cast<int>(e.size())), BIO_free);
      PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
      if (!key)
        return core::invalidArgument(
            what + ": not a PEM public key (BEGIN PUBLIC KEY): " + opensslError());
      OUTPOST_ASSIGN_OR_RETURN(auto raw, rawKeyOf(key.get(), what));
      out.keys.push_back(raw);
      continue;
    }
    auto raw = base64Decode(e);
    if (!raw || raw->size() != 32)
      return core::invalidArgument(
          what + ": neither a PEM public key nor the base64 of a raw 32-byte Ed25519 key");
    std::array<uint8_t, 32> key{};
    std::copy(raw->begin(), raw->end(), key.begin());
    out.keys.push_back(key);
  }
  return out;
}

core::Result<std::array<uint8_t, 32>> sha256File(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::notFound("cannot open " + path.string());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    return core::internalError("SHA-256: " + opensslError());
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return core::unavailable("reading " + path.string() + " failed");
  std::array<uint8_t, 32> digest{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &len) != 1 || len != digest.size())
    return core::internalError("SHA-256: " + opensslError());
  return digest;
}

std::string toHex(const std::array<uint8_t, 32>& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

core::Status verifyPackage(const std::filesystem::path& path, std::string_view sha256Hex,
                           std::string_view signatureB64, const TrustedKeys& keys) {
  OUTPOST_ASSIGN_OR_RETURN(auto digest, sha256File(path));
  std::string got = toHex(digest);
  if (got != sha256Hex)
    return core::dataLoss("the package's SHA-256 is " + got + ", the AgentUpgrade says " +
                          std::string(sha256Hex));
  auto sig = base64Decode(signatureB64);
  if (!sig || sig->size() != 64)
    return core::invalidArgument("the signature is not the base64 of a 64-byte Ed25519 signature");
  if (keys.keys.empty())
    return core::permissionDenied(
        "no key to check the signature with: upgrade.trusted_keys is empty");
  for (const auto& raw : keys.keys) {
    PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()),
                EVP_PKEY_free);
    if (!key) continue;
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    // Ed25519 hashes inside: no digest here, and the message is the 32 bytes of the SHA-256.
    if (ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
        EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()),
                         sig->size(), digest.data(), digest.size()) == 1)
      return core::okStatus();
    ERR_clear_error();
  }
  return core::permissionDenied("the package's signature was made by none of the " +
                                std::to_string(keys.keys.size()) +
                                " key(s) in upgrade.trusted_keys");
}

}  // namespace outpost::upgrade
