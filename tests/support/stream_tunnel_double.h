#pragma once
// A stand-in for CloudCore's cloudstream tunnel server (docs/kubeedge.md, "The stream tunnel"): a
// Boost.Beast TLS WebSocket server on 127.0.0.1 port 0 that, as cloudstream does, requires a client
// certificate from its CA, serves the upgrade only on /v1/kubeedge/connect, takes the node's name
// from the SessionHostNameOverride header (refused with 400 when missing: cloudstream would key the
// session by an empty name) and its address from SessionInternalIP, and then speaks the tunnel's
// binary messages. The test plays the apiserver: logs(), metrics(), exec() and attach() send the
// connect message cloudstream would send for that kubelet URL and return the session, whose bytes
// from the node are recorded. A text frame from the node closes the tunnel (cloudstream reads
// binary messages only).

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "support/mosquitto.h"

namespace outpost::test {

class StreamTunnelDouble {
 public:
  // One apiserver request through the tunnel.
  class Session {
   public:
    uint64_t id() const { return id_; }
    std::string received() const;  // the Data bytes from the node so far
    bool removed() const;          // the node sent RemoveConnect
    // Waits until `pred(received())` holds or the timeout passes.
    bool waitFor(const std::function<bool(const std::string&)>& pred,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
    bool waitRemoved(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
    void send(const std::string& bytes);  // Data toward the node
    void remove();                        // RemoveConnect: the apiserver's request ended

   private:
    friend class StreamTunnelDouble;
    Session(StreamTunnelDouble& d, uint64_t id) : double_(d), id_(id) {}
    StreamTunnelDouble& double_;
    uint64_t id_;
  };
  using SessionPtr = std::shared_ptr<Session>;

  explicit StreamTunnelDouble(const TlsFiles& tls);
  ~StreamTunnelDouble();

  int port() const;
  std::string address() const;  // 127.0.0.1:PORT, what cloud.websocket.stream_server names

  // Waits until a node's tunnel is open; the n-th since the start.
  bool waitConnected(uint64_t n = 1, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool connected() const;
  std::string nodeName() const;    // SessionHostNameOverride of the last tunnel
  std::string internalIp() const;  // SessionInternalIP of the last tunnel
  std::string clientCn() const;
  std::vector<std::string> refusals() const;  // why upgrades were refused

  // GET /containerLogs/NS/POD/CONTAINER?QUERY
  SessionPtr logs(const std::string& ns, const std::string& pod, const std::string& container,
                  const std::string& query = "");
  SessionPtr metrics(const std::string& path = "/metrics/resource");
  // POST /exec/NS/POD/CONTAINER?QUERY with the SPDY upgrade headers kubectl sends.
  SessionPtr exec(const std::string& ns, const std::string& pod, const std::string& container,
                  const std::string& query);
  SessionPtr attach(const std::string& ns, const std::string& pod, const std::string& container,
                    const std::string& query);
  // An exec (type 1) or attach (type 6) connect whose request carries `headers` as they are (the
  // upgrade of a WebSocket client the test runs: Kubernetes' v4.channel.k8s.io) instead of
  // kubectl's SPDY ones.
  SessionPtr upgrade(uint64_t type, const std::string& path, const std::string& query,
                     const std::string& method,
                     const std::vector<std::pair<std::string, std::string>>& headers);
  // Any message, as it is (for what a real cloudstream would not send).
  SessionPtr raw(uint64_t type, const std::string& data);

  // Cuts the TCP connection under the tunnel (no close handshake).
  void dropTunnel();
  // cloudstream's CloseConnect (type 5) with `reason`.
  void closeTunnel(const std::string& reason);

 private:
  SessionPtr connect(uint64_t type, const std::string& path, const std::string& query,
                     const std::string& method, bool upgrade,
                     const std::vector<std::pair<std::string, std::string>>* headers = nullptr);
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::test
