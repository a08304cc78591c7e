#pragma once
// OpenSSL behind plain strings: keys, CSRs, certificates (PEM/DER), hashes.
// Internal to cloudhub; no OpenSSL type leaves this header.

#include <optional>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/status.h"

namespace outpost::cloudhub::crypto {

// What we read from a certificate.
struct CertInfo {
  std::string commonName, organization;
  std::string serial;  // hex
  core::WallTime notBefore, notAfter;
};

// Lower-case hex of the SHA-256 of `bytes`.
std::string sha256Hex(const std::string& bytes);

core::Result<CertInfo> parseCertPem(const std::string& pem);
core::Result<CertInfo> parseCertDer(const std::string& der);
// A DER certificate as PEM (checked to parse).
core::Result<std::string> certDerToPem(const std::string& der);

// A fresh ECDSA P-256 key (PKCS#8 PEM) and a CSR signed by it with subject CN=`cn`, O=`o`, in
// DER: CloudCore's /edge.crt parses the request body as DER only (as EdgeCore sends it).
struct KeyAndCsr {
  std::string keyPem, csrDer;
};
core::Result<KeyAndCsr> makeKeyAndCsr(const std::string& cn, const std::string& o);

// OK when `certPem`'s public key is the one of `keyPem`.
core::Status checkKeyMatches(const std::string& certPem, const std::string& keyPem);
// OK when `certPem` is signed by `caPem` (validity times not checked: the local clock may be off,
// the server checks them).
core::Status checkIssuedBy(const std::string& certPem, const std::string& caPem);

// The last OpenSSL error as text (and clears the queue).
std::string opensslError();

// The whole file, or nullopt when it cannot be read.
std::optional<std::string> readWhole(const std::string& path);
// `t` as RFC 3339 UTC to the second ("2026-12-06T21:00:00Z").
std::string isoTime(core::WallTime t);

}  // namespace outpost::cloudhub::crypto
