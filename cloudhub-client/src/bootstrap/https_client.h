#pragma once
// One blocking HTTPS request with a deadline (Boost.Beast over OpenSSL), as the certificate
// endpoints need it: unverified (fetching the CA to pin), verified by a given CA, or with a client
// certificate.

#include <string>
#include <utility>
#include <vector>

#include "outpost/core/clock.h"
#include "outpost/core/status.h"

namespace outpost::cloudhub {

struct HttpsRequest {
  std::string server;  // https://host[:port]
  std::string target;  // /ca.crt
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool verifyServer = true;  // against caPem, with the host name of `server`
  std::string caPem;
  std::string certFile, keyFile;                      // client certificate (mutual TLS), when set
  core::Duration timeout = std::chrono::seconds(30);  // real time, the whole request
};

struct HttpsResponse {
  int status = 0;
  std::string reason;
  std::string body;
};

// GET `target`; an answer of any HTTP status is a response, only transport failures are errors
// (UNAVAILABLE naming the step: resolve, connect, TLS handshake, write, read).
core::Result<HttpsResponse> httpsGet(const HttpsRequest& request);

}  // namespace outpost::cloudhub
