// The KubeEdge WebSocket transport (kubeedge/websocket_transport.h).

#include "kubeedge/websocket_transport.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace outpost::cloudhub {

namespace {

std::string readText(const std::string& path, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return "";
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

}  // namespace

std::string WebsocketTransport::url() const {
  std::string base = opts_.server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + "/" + opts_.projectId + "/" + opts_.nodeName + "/events";
}

core::Result<WsTlsMaterial> WebsocketTransport::readTls() const {
  WsTlsMaterial m;
  std::string error;
  struct File {
    const char* key;
    const std::string& path;
    std::string& out;
  };
  for (File f : {File{"cloud.tls.ca", opts_.caFile, m.caPem},
                 File{"cloud.tls.cert", opts_.certFile, m.certPem},
                 File{"cloud.tls.key", opts_.keyFile, m.keyPem}}) {
    if (f.path.empty())
      return core::failedPrecondition(std::string(f.key) + " is required for wss://");
    f.out = readText(f.path, error);
    if (!error.empty()) return core::unavailable(std::string(f.key) + ": " + error);
  }
  core::Status s = checkTlsMaterial(m);
  if (!s.isOk()) {
    return core::invalidArgument("TLS files (" + opts_.caFile + ", " + opts_.certFile + ", " +
                                 opts_.keyFile + "): " + s.message());
  }
  return m;
}

core::Status WebsocketTransport::connect(core::Duration deadline, TransportEvents events) {
  close();
  OUTPOST_ASSIGN_OR_RETURN(WsTlsMaterial tls, readTls());
  WsConnectOptions c;
  c.url = url();
  c.headers = {
      {"node_id", opts_.nodeName}, {"project_id", opts_.projectId}, {"ConnectionUse", "msg"}};
  c.tls = std::move(tls);
  c.connectTimeout = std::chrono::duration_cast<std::chrono::milliseconds>(deadline);
  // Frames up to 4 x the message limit arrive and are counted as too large by the codec, the
  // connection staying up; larger ones close it.
  c.maxFrameBytes = 4 * opts_.maxMessageBytes;
  WsEvents ev;
  ev.opened = std::move(events.opened);
  ev.failed = events.closed;
  ev.closed = std::move(events.closed);
  ev.text = [frame = std::move(events.frame)](std::string text) {
    frame(Incoming{"", std::move(text), 0});
  };
  ev.pong = std::move(events.heard);
  log_.debug("connecting to ", c.url, " as ", opts_.nodeName);
  OUTPOST_ASSIGN_OR_RETURN(conn_, WsConnection::open(std::move(c), std::move(ev)));
  return core::okStatus();
}

void WebsocketTransport::send(Outgoing out, std::function<void(core::Status)> done) {
  if (!conn_) return done(core::unavailable("not connected"));
  conn_->sendText(std::move(out.payload), std::move(done));
}

void WebsocketTransport::ping() {
  if (conn_) conn_->ping();
}

void WebsocketTransport::close() {
  if (conn_) {
    closing_.push_back(conn_->close());
    conn_.reset();
  }
  std::erase_if(closing_, [](const std::shared_future<void>& f) {
    return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  });
}

void WebsocketTransport::shutdown() {
  close();
  // No event comes any more; wait for the connections' threads to go.
  for (auto& f : closing_) {
    if (f.wait_for(std::chrono::seconds(15)) != std::future_status::ready)
      log_.error("a WebSocket connection did not close within 15 s");
  }
  closing_.clear();
}

}  // namespace outpost::cloudhub
