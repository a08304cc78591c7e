#pragma once
// A stand-in for CloudCore's certificate endpoints (PROTOCOL.md §1 "Certificate bootstrap"): an
// HTTPS server on loopback, port 0, with its own CA. GET /ca.crt answers the CA in DER; GET
// /edge.crt signs the CSR in the body when the request carries `Authorization: Bearer <jwt>` and
// `NodeName`, or comes over mutual TLS with a certificate this server issued (rotation). Records
// every request.

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace outpost::test {

struct CertServerOptions {
  std::string jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2lnbmVkLWJ5LXRlc3Q";
  std::chrono::seconds lifetime{3600};  // of the certificates it signs
};

// One request as the server saw it.
struct CertServerRequest {
  std::string target;                          // "/ca.crt"
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string clientCn, clientSerial;          // of the client certificate, when one was sent
  int status = 0;                              // what the server answered
};

class CertServer {
 public:
  // Makes its CA and server certificate (127.0.0.1, localhost) under `dir`.
  explicit CertServer(const std::filesystem::path& dir, CertServerOptions options = {});
  ~CertServer();
  CertServer(const CertServer&) = delete;
  CertServer& operator=(const CertServer&) = delete;

  int port() const;
  std::string url() const;  // https://127.0.0.1:<port>
  std::string caFile() const;
  std::string caDer() const;
  const std::string& jwt() const;
  // The token `keadm gettoken` would print: <sha256 hex of the CA's DER>.<jwt>.
  std::string token() const;

  void setLifetime(std::chrono::seconds lifetime);
  // Certificates signed from now on start this long before now (0: now); with a backdate longer
  // than the lifetime they are expired when issued.
  void setBackdate(std::chrono::seconds backdate);
  // While on, GET /edge.crt answers 503 (a CloudCore that is down for maintenance).
  void setRefuse(bool on);

  std::vector<CertServerRequest> requests() const;
  // Serials (hex, as OpenSSL prints them) of every certificate signed so far, in order.
  std::vector<std::string> issued() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::test
