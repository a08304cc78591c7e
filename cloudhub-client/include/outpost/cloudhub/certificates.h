#pragma once
// The node's client certificate for KubeEdge's CloudHub (PROTOCOL.md §1 "Certificate bootstrap"):
// bootstrap from a token, check at start, rotate before expiry. Only agent/ (and tests) include
// this.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/core/status.h"

namespace outpost::cloudhub {

struct CertificateOptions {
  std::string nodeName;    // the certificate's CN is system:node:<nodeName>, O system:nodes
  std::string certServer;  // https://host:10002 (CloudCore's certificate endpoints)
  std::string caFile, certFile, keyFile;  // where the CA, the certificate and its key live
  std::string tokenFile;  // `keadm gettoken`'s output: <sha256 hex of CA DER>.<JWT>; may be empty
  // Rotation happens at a uniformly random point in this share of the lifetime.
  double rotateFrom = 0.7, rotateTo = 0.9;
  // How often the wall clock is looked at again (a clock set forward or back is noticed this late).
  core::Duration checkInterval = std::chrono::minutes(1);
  // Back-off of failed rotations (full jitter, as the link's reconnects).
  core::Duration retryBase = std::chrono::seconds(10);
  core::Duration retryCap = std::chrono::minutes(10);
  // Real-time bound of one HTTPS request (connect, handshake, answer).
  core::Duration requestTimeout = std::chrono::seconds(30);
  uint64_t seed = 0;  // 0: random; tests fix it
};

// What `outpostctl status` and the metrics show of the certificate.
struct CertificateState {
  bool present = false;  // a certificate is loaded
  std::string subject, serial;
  std::optional<core::WallTime> notBefore, notAfter;
  std::optional<core::WallTime> nextRotation;  // on the wall clock
  std::optional<core::WallTime> lastRotation;
  std::string lastError;  // empty after a success
  int64_t rotations = 0;  // renewals done by this process (bootstraps at start not counted)
  int64_t failures = 0;   // failed renewal attempts
  int64_t checks = 0;     // times the schedule was looked at (every checkInterval)
};

class CertificateManager {
 public:
  virtual ~CertificateManager() = default;
  // At start: keeps a valid certificate; bootstraps when it is missing, expired or does not match
  // its key and a token is configured; otherwise says what the operator must do.
  virtual core::Status ensure() = 0;
  // Fetches a certificate with the token now (the CA pinned by the token's hash).
  virtual core::Status bootstrap() = 0;
  // Renews now over mutual TLS with the current certificate (no token).
  virtual core::Status rotate() = 0;
  // Starts the background schedule; `onRotated` runs on the manager's thread after each renewal
  // (the agent makes the link reconnect with the new files).
  virtual void startRotation(std::function<void()> onRotated) = 0;
  virtual void stop() = 0;
  // Safe from any thread.
  virtual CertificateState state() const = 0;
};
using CertificateManagerPtr = std::unique_ptr<CertificateManager>;

// Whether the PEM certificate in `certFile` is valid at `now`, as the cloud will judge it:
// FailedPrecondition naming the file and its notAfter ("... expired on 2024-05-01T00:00:00Z") or
// its notBefore ("... is not valid before ..."); InvalidArgument when the file holds no
// certificate; NotFound when it cannot be read.
core::Status checkCertificateTimes(const std::string& certFile, core::WallTime now);

CertificateManagerPtr makeCertificateManager(CertificateOptions options, core::Clock& clock,
                                             core::Logging& logging,
                                             core::MetricsRegistry& metrics);

}  // namespace outpost::cloudhub
