#pragma once
// A real mosquitto broker for tests: its own config, persistence and port under a temporary dir, on
// loopback, on a port the system picked free. Stops (and can restart on the same port) on demand.

#include <memory>
#include <string>

#include "support/test_util.h"

namespace outpost::test {

struct TlsFiles {
  std::string ca, serverCert, serverKey, clientCert, clientKey;
};

// Makes a CA, a server certificate for 127.0.0.1/localhost and a client certificate with
// `clientCn` (and organisation `clientO` when not empty, e.g. CN "system:node:<node>", O
// "system:nodes" for KubeEdge), all with the openssl command line, under `dir`. Names may not
// hold a slash, a single quote, a backslash or a newline.
TlsFiles makeTlsFiles(const std::filesystem::path& dir, const std::string& clientCn = "test-node",
                      const std::string& clientO = "");

// Signs makeTlsFiles's client request in `dir` again, valid from `notBefore` to `notAfter`
// (YYYYMMDDHHMMSSZ, e.g. "20200101000000Z"), with `openssl ca`: a certificate already expired or
// not yet valid, by the same CA and with the same key as client.crt. Returns its path
// (`dir`/`name`.crt).
std::string reissueClientCert(const std::filesystem::path& dir, const std::string& name,
                              const std::string& notBefore, const std::string& notAfter);

class Mosquitto {
 public:
  // Plain TCP; with `tls`, a TLS listener that requires client certificates from the CA.
  // `extraConfig`: lines of mosquitto.conf added before the listener (e.g. "max_queued_messages
  // 50\n").
  explicit Mosquitto(const TlsFiles* tls = nullptr, const std::string& extraConfig = "");
  ~Mosquitto();

  int port() const { return port_; }
  std::string uri() const;  // tcp://127.0.0.1:<port> or ssl://127.0.0.1:<port>
  void stop();              // SIGTERM and wait; retained messages persist to disk
  void start();             // again, on the same port, with what it persisted
  bool running() const { return child_ != nullptr; }

 private:
  TempDir dir_;
  int port_ = 0;
  bool tls_ = false;
  std::unique_ptr<Child> child_;
};

// A free TCP port on 127.0.0.1, chosen by binding port 0.
int freePort();

}  // namespace outpost::test
