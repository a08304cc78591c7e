// A package is accepted only with its SHA-256 and a signature of it by a trusted key; keys and
// signatures are made with the openssl command, as docs/operations.md tells a release manager to.
#include "outpost/upgrade/verify.h"

#include <doctest/doctest.h>

#include "support/test_util.h"
#include "upgrade/upgrade_test_util.h"

using outpost::core::Code;
using outpost::upgrade::parseTrustedKeys;
using outpost::upgrade::verifyPackage;

TEST_CASE(
    "a package signed by a trusted key with the right digest is accepted, any change refused") {
  outpost::test::TempDir dir;
  outpost::test::ReleaseKey release(dir.path(), "release"), other(dir.path(), "other");
  auto pkg = dir / "outpost.deb";
  outpost::test::writeFile(pkg, std::string(100000, 'x') + "package");
  std::string digest = outpost::test::sha256Hex(pkg), sig = release.sign(pkg);

  auto keys = parseTrustedKeys({other.publicPem(), release.publicPem()});
  REQUIRE(keys.isOk());
  CHECK(verifyPackage(pkg, digest, sig, *keys).isOk());
  // The raw base64 form of the same key is the same key.
  auto raw = parseTrustedKeys({release.publicRawBase64()});
  REQUIRE(raw.isOk());
  CHECK(verifyPackage(pkg, digest, sig, *raw).isOk());

  SUBCASE("a digest that differs") {
    std::string wrong = digest;
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    auto s = verifyPackage(pkg, wrong, sig, *keys);
    CHECK(s.code() == Code::kDataLoss);
    CHECK(s.message() == "the package's SHA-256 is " + digest + ", the AgentUpgrade says " + wrong);
  }
  SUBCASE("a changed file") {
    outpost::test::writeFile(pkg, std::string(100000, 'x') + "packagf");
    CHECK(verifyPackage(pkg, digest, sig, *keys).code() == Code::kDataLoss);
  }
  SUBCASE("a file changed with its digest, signed by a key that is not trusted") {
    outpost::test::writeFile(pkg, "evil");
    auto s = verifyPackage(pkg, outpost::test::sha256Hex(pkg), other.sign(pkg),
                           *parseTrustedKeys({release.publicPem()}));
    CHECK(s.code() == Code::kPermissionDenied);
    CHECK(s.message() ==
          "the package's signature was made by none of the 1 key(s) in upgrade.trusted_keys");
  }
  SUBCASE("a signature of another file") {
    auto other_pkg = dir / "other.deb";
    outpost::test::writeFile(other_pkg, "other");
    CHECK(verifyPackage(pkg, digest, release.sign(other_pkg), *keys).code() ==
          Code::kPermissionDenied);
  }
  SUBCASE("no trusted key") {
    auto s = verifyPackage(pkg, digest, sig, {});
    CHECK(s.code() == Code::kPermissionDenied);
    CHECK(s.message().find("upgrade.trusted_keys is empty") != std::string::npos);
  }
  SUBCASE("a signature that is not one") {
    CHECK(verifyPackage(pkg, digest, "bm90IGEgc2lnbmF0dXJl", *keys).code() ==
          Code::kInvalidArgument);
  }
}

TEST_CASE("trusted keys that are not Ed25519 public keys are refused naming the entry") {
  outpost::test::TempDir dir;
  outpost::test::ReleaseKey release(dir.path(), "release");
  std::string out, err;
  REQUIRE(outpost::test::run({outpost::test::kOpenssl, "genpkey", "-algorithm", "EC", "-pkeyopt",
                              "ec_paramgen_curve:P-256", "-out", (dir / "ec.key").string()}) == 0);
  REQUIRE(outpost::test::run({outpost::test::kOpenssl, "pkey", "-in", (dir / "ec.key").string(),
                              "-pubout", "-out", (dir / "ec.pub").string()}) == 0);
  auto ec = parseTrustedKeys({release.publicPem(), outpost::test::readFile(dir / "ec.pub")});
  REQUIRE_FALSE(ec.isOk());
  CHECK(ec.status().message() == "upgrade.trusted_keys[1]: not an Ed25519 public key");

  auto junk = parseTrustedKeys({"c2hvcnQ="});
  REQUIRE_FALSE(junk.isOk());
  CHECK(junk.status().message() ==
        "upgrade.trusted_keys[0]: neither a PEM public key nor the base64 of a raw 32-byte Ed25519 "
        "key");
  auto badPem = parseTrustedKeys({"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"});
  REQUIRE_FALSE(badPem.isOk());
  CHECK(badPem.status().message().starts_with("upgrade.trusted_keys[0]: not a PEM public key"));
}
