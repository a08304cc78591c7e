#include "upgrade/upgrade_test_util.h"

#include <doctest/doctest.h>

namespace outpost::test {

namespace {
std::string sh(const std::vector<std::string>& argv) {
  std::string out, err;
  int rc = run(argv, &out, &err);
  REQUIRE_MESSAGE(rc == 0, argv[0], " ", argv[1], ": ", err);
  while (!out.empty() && (out.back() == '\n')) out.pop_back();
  return out;
}
}  // namespace

ReleaseKey::ReleaseKey(const std::filesystem::path& dir, const std::string& name)
    : dir_(dir), key_(dir / (name + ".key")) {
  sh({kOpenssl, "genpkey", "-algorithm", "ed25519", "-out", key_.string()});
  sh({kOpenssl, "pkey", "-in", key_.string(), "-pubout", "-out", (dir / (name + ".pub")).string()});
  publicPem_ = readFile(dir / (name + ".pub"));
}

std::string ReleaseKey::publicRawBase64() const {
  // The DER of an Ed25519 SubjectPublicKeyInfo ends with the 32 raw bytes.
  auto der = dir_ / "pub.der";
  sh({kOpenssl, "pkey", "-in", key_.string(), "-pubout", "-outform", "DER", "-out", der.string()});
  std::string bytes = readFile(der);
  writeFile(der, bytes.substr(bytes.size() - 32));
  return sh({kOpenssl, "base64", "-A", "-in", der.string()});
}

std::string ReleaseKey::sign(const std::filesystem::path& file) const {
  auto digest = dir_ / "digest.bin", sig = dir_ / "sig.bin";
  sh({kOpenssl, "dgst", "-sha256", "-binary", "-out", digest.string(), file.string()});
  sh({kOpenssl, "pkeyutl", "-sign", "-rawin", "-inkey", key_.string(), "-in", digest.string(),
      "-out", sig.string()});
  return sh({kOpenssl, "base64", "-A", "-in", sig.string()});
}

std::string sha256Hex(const std::filesystem::path& file) {
  std::string out = sh({kOpenssl, "dgst", "-sha256", "-r", file.string()});
  return out.substr(0, 64);
}

}  // namespace outpost::test
