#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

// OpenSSL's SSL_set_tlsext_host_name is a macro with a C cast.
#pragma GCC diagnostic ignored "-Wold-style-cast"

#include "bootstrap/tls_probe.h"
#include "outpost/mqttc/client.h"

namespace outpost::cloudhub {

namespace {
using SteadyClock = std::chrono::steady_clock;

std::string opensslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "connection closed by the server";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::chrono::milliseconds left(SteadyClock::time_point deadline) {
  return std::max(
      std::chrono::milliseconds(0),
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()));
}

struct AddrInfoFree {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoFree>;

// getaddrinfo has no timeout, and a site whose uplink is down may wait many seconds for its DNS
// server: the lookup runs on its own thread, which finishes on its own if we stop waiting.
core::Result<AddrInfoPtr> resolve(const std::string& host, const std::string& port,
                                  SteadyClock::time_point deadline) {
  struct Lookup {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int rc = 0;
    addrinfo* result = nullptr;
    ~Lookup() {
      if (result) freeaddrinfo(result);
    }
  };
  auto lookup = std::make_shared<Lookup>();
  std::thread([lookup, host, port] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    std::lock_guard lock(lookup->mu);
    lookup->rc = rc;
    lookup->result = res;
    lookup->done = true;
    lookup->cv.notify_all();
  }).detach();
  std::unique_lock lock(lookup->mu);
  if (!lookup->cv.wait_until(lock, deadline, [&] { return lookup->done; })) {
    return core::unavailable("no answer to the name lookup of " + host + " in time");
  }
  if (lookup->rc != 0) {
    return core::unavailable("cannot resolve " + host + ": " + gai_strerror(lookup->rc));
  }
  return AddrInfoPtr(std::exchange(lookup->result, nullptr));
}

// A TCP connection to one of the addresses, made before the deadline; -1 and `why` otherwise.
int connectBefore(const addrinfo* addrs, SteadyClock::time_point deadline, std::string& why) {
  why = "no address";
  for (const addrinfo* a = addrs; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int n = 0;
      do {
        n = poll(&p, 1, static_cast<int>(left(deadline).count()));
      } while (n < 0 && errno == EINTR);
      int err = 0;
      socklen_t len = sizeof err;
      if (n == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        rc = 0;
      } else {
        why = n == 0 ? "no answer to the TCP connect in time" : std::strerror(err ? err : errno);
      }
    } else if (rc != 0) {
      why = std::strerror(errno);
    }
    if (rc == 0) {
      // Back to blocking, each read and write bounded by what is left of the deadline.
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      auto ms = std::max<std::chrono::milliseconds>(left(deadline), std::chrono::milliseconds(1));
      timeval tv{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      return fd;
    }
    close(fd);
    if (left(deadline).count() == 0) break;
  }
  return -1;
}
}  // namespace

core::Status probeTls(const TlsProbeTarget& o, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  auto scheme = o.uri.find("://");
  if (scheme == std::string::npos) return core::invalidArgument("no scheme in " + o.uri);
  std::string hostPort = o.uri.substr(scheme + 3);
  if (auto slash = hostPort.find('/'); slash != std::string::npos) hostPort.resize(slash);
  auto colon = hostPort.rfind(':');
  std::string host = colon == std::string::npos ? hostPort : hostPort.substr(0, colon);
  std::string port = colon == std::string::npos ? (o.uri.rfind("wss://", 0) == 0 ? "443" : "8883")
                                                : hostPort.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]
  }

  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return core::internalError("SSL_CTX_new: " + opensslError());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!o.caFile.empty() &&
      SSL_CTX_load_verify_locations(ctx.get(), o.caFile.c_str(), nullptr) != 1) {
    return core::invalidArgument("cannot load CA file " + o.caFile + ": " + opensslError());
  }
  if (o.caFile.empty()) SSL_CTX_set_default_verify_paths(ctx.get());
  if (!o.certFile.empty() &&
      SSL_CTX_use_certificate_chain_file(ctx.get(), o.certFile.c_str()) != 1) {
    return core::invalidArgument("cannot load client certificate " + o.certFile + ": " +
                                 opensslError());
  }
  if (!o.keyFile.empty() &&
      SSL_CTX_use_PrivateKey_file(ctx.get(), o.keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
    return core::invalidArgument("cannot load client key " + o.keyFile + ": " + opensslError());
  }

  auto addrs = resolve(host, port, deadline);
  if (!addrs.isOk()) return addrs.status();
  std::string why;
  int fd = connectBefore(addrs->get(), deadline, why);
  if (fd < 0) return core::unavailable("cannot connect to " + hostPort + ": " + why);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1) {
    close(fd);
    return core::internalError("SSL_new: " + opensslError());
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } closer{fd};
  SSL_set_tlsext_host_name(ssl.get(), host.c_str());
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1)
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  ERR_clear_error();
  errno = 0;
  if (SSL_connect(ssl.get()) != 1) {
    long verify = SSL_get_verify_result(ssl.get());
    if (verify != X509_V_OK) {
      return core::unavailable(std::string("certificate verify failed: ") +
                               X509_verify_cert_error_string(verify));
    }
    if (ERR_peek_error() == 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return core::unavailable(
          "the server accepted the connection but did not answer the TLS "
          "handshake within " +
          std::to_string(timeout.count()) + " ms");
    }
    return core::unavailable("TLS handshake failed: " + opensslError());
  }
  // With TLS 1.3 the server judges the client certificate after the client's handshake is done:
  // its refusal arrives as an alert on the first read. A server that accepted us waits for a
  // request, so the read times out.
  auto ms = std::clamp<std::chrono::milliseconds>(left(deadline), std::chrono::milliseconds(1),
                                                  std::chrono::milliseconds(1000));
  timeval tv{static_cast<time_t>(ms.count() / 1000),
             static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char byte;
  if (SSL_read(ssl.get(), &byte, 1) <= 0 && ERR_peek_error() != 0) {
    return core::unavailable("the server refused the client certificate: " + opensslError());
  }
  return core::okStatus();
}

core::Status probeTls(const mqttc::ConnectOptions& o, std::chrono::milliseconds timeout) {
  return probeTls(TlsProbeTarget{o.uri, o.caFile, o.certFile, o.keyFile}, timeout);
}

}  // namespace outpost::cloudhub
