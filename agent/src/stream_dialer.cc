#include "outpost/agent/stream_dialer.h"

#include <fstream>
#include <sstream>

#include "outpost/cloudhub/ws_connection.h"

namespace outpost::agent {

namespace {

// A tunnel message is at most a session's 32 KiB part or a connect message of 64 KiB; larger
// frames from the cloud close the connection.
constexpr size_t kMaxTunnelFrameBytes = size_t{1} << 20;

core::Result<std::string> readPem(const char* key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::unavailable(std::string(key) + ": cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class WsTunnelConnection final : public stream::TunnelConnection {
 public:
  explicit WsTunnelConnection(cloudhub::WsConnectionPtr conn) : conn_(std::move(conn)) {}
  ~WsTunnelConnection() override { close(); }

  // ---- stream::TunnelConnection
  void send(std::string message, std::function<void(bool)> done) override {
    conn_->sendText(std::move(message), [done = std::move(done)](core::Status s) {
      if (done) done(s.isOk());
    });
  }
  void ping() override { conn_->ping(); }
  void close() override { conn_->close(); }

 private:
  cloudhub::WsConnectionPtr conn_;
};

}  // namespace

stream::Dialer makeStreamDialer(StreamDialerOptions o) {
  return [o](stream::TunnelConnectionEvents events) -> core::Result<stream::TunnelConnectionPtr> {
    cloudhub::WsConnectOptions c;
    c.url = "wss://" + o.server + "/v1/kubeedge/connect";
    c.headers = {{"SessionHostNameOverride", o.nodeName}};
    if (!o.nodeAddress.empty()) c.headers["SessionInternalIP"] = o.nodeAddress;
    OUTPOST_ASSIGN_OR_RETURN(c.tls.caPem, readPem("cloud.tls.ca", o.caFile));
    OUTPOST_ASSIGN_OR_RETURN(c.tls.certPem, readPem("cloud.tls.cert", o.certFile));
    OUTPOST_ASSIGN_OR_RETURN(c.tls.keyPem, readPem("cloud.tls.key", o.keyFile));
    c.connectTimeout = o.connectTimeout;
    c.maxFrameBytes = kMaxTunnelFrameBytes;
    c.binary = true;
    cloudhub::WsEvents ev;
    ev.opened = events.opened;
    ev.failed = events.ended;
    ev.closed = events.ended;
    ev.text = events.message;
    ev.pong = events.heard;
    OUTPOST_ASSIGN_OR_RETURN(auto conn, cloudhub::WsConnection::open(std::move(c), std::move(ev)));
    return stream::TunnelConnectionPtr(std::make_shared<WsTunnelConnection>(std::move(conn)));
  };
}

}  // namespace outpost::agent
