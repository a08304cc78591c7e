// The real outpostd on the real containerd behind CloudCore's stream tunnel (the double): what
// `kubectl exec -it`, `kubectl attach` and `kubectl top` show of a node's pod. The test plays the
// apiserver with a WebSocket client speaking Kubernetes' remote-command protocol
// (v4.channel.k8s.io): its upgrade request goes into the tunnel's connect message, and the bytes
// flow through the tunnel, the agent's relay and containerd's streaming server.
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "outpost/agent/exit_codes.h"
#include "support/cloudhub_double.h"
#include "support/containerd_harness.h"
#include "support/remote_command.h"
#include "support/stream_tunnel_double.h"
#include "support/test_util.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

// A WebSocket client whose upgrade goes through the tunnel: a loopback socket with the client at
// one end; the other end's request becomes the tunnel's connect message (`type`: 1 exec, 6
// attach) and its bytes the session's Data, both ways.
class TunnelClient {
 public:
  TunnelClient(StreamTunnelDouble& tunnel, uint64_t type, const std::string& target)
      : tunnel_(tunnel), type_(type) {
    listenOnLoopback(acceptor_);
    server_ = std::thread([this] { serve(); });
    ec_ = upgradeRemoteCommand(ws_, acceptor_.local_endpoint(), target);
  }
  ~TunnelClient() {
    stop_ = true;
    beast::error_code ec;
    ws_.next_layer().close(ec);
    server_.join();
    if (down_.joinable()) down_.join();
    if (session_ && !session_->removed()) session_->remove();
  }
  // Why the upgrade failed (empty when it worked), with what the node answered.
  std::string handshakeError() const {
    if (!ec_) return "";
    return ec_.message() + "; the node sent: " + (session_ ? session_->received() : "nothing");
  }
  void send(char channel, const std::string& data) { channels_.send(channel, data); }
  // Reads until `want` arrives on `channel` (1 stdout, 2 stderr, 3 error) or 10 s pass.
  bool readUntil(char channel, const std::string& want) {
    bool ok = channels_.readUntil(channel, want);
    if (!ok && !channels_.readError().empty()) MESSAGE("websocket read: " << channels_.readError());
    return ok;
  }
  std::string got(char channel) { return channels_.got(channel); }
  StreamTunnelDouble::SessionPtr session() const { return session_; }

 private:
  // The apiserver's side, on its own thread (no doctest assertion here).
  void serve() {
    beast::error_code ec;
    acceptor_.accept(peer_, ec);
    if (ec) return;
    beast::flat_buffer buffer;
    http::request<http::empty_body> req;
    http::read(peer_, buffer, req, ec);
    if (ec) return;
    std::string target(req.target());
    size_t q = target.find('?');
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& f : req) {
      headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    session_ = tunnel_.upgrade(type_, target.substr(0, q),
                               q == std::string::npos ? "" : target.substr(q + 1),
                               std::string(req.method_string()), headers);
    down_ = std::thread([this] { pumpDown(); });
    if (buffer.size() > 0) session_->send(beast::buffers_to_string(buffer.data()));
    std::array<char, 16384> in{};
    for (;;) {
      size_t n = peer_.read_some(asio::buffer(in), ec);
      if (n > 0) session_->send(std::string(in.data(), n));
      if (ec) break;
    }
  }
  // The node's bytes to the client, as they arrive in the session.
  void pumpDown() {
    size_t sent = 0;
    while (!stop_) {
      session_->waitFor([&](const std::string& r) { return r.size() > sent; }, 200ms);
      std::string r = session_->received();
      if (r.size() > sent) {
        beast::error_code ec;
        asio::write(peer_, asio::buffer(r.data() + sent, r.size() - sent), ec);
        if (ec) return;
        sent = r.size();
      } else if (session_->removed()) {
        beast::error_code ec;
        peer_.shutdown(tcp::socket::shutdown_send, ec);
        return;
      }
    }
  }

  StreamTunnelDouble& tunnel_;
  uint64_t type_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  tcp::socket peer_{io_};
  websocket::stream<tcp::socket> ws_{io_};
  beast::error_code ec_;
  std::thread server_;
  std::thread down_;
  std::atomic<bool> stop_{false};
  StreamTunnelDouble::SessionPtr session_;
  RemoteCommandChannels channels_{ws_};
};

json shellPod() {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", "shell"},
            {"namespace", "default"},
            {"uid", "6f1d2c3b-0000-4000-8000-00000000c001"},
            {"resourceVersion", "10"}}},
          {"spec",
           {{"nodeName", "ws-exec"},
            {"hostNetwork", true},
            {"containers",
             {{{"name", "loop"},
               {"image", ContainerdHarness::kBusybox},
               {"command", {"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"}}},
              {{"name", "console"},
               {"image", ContainerdHarness::kBusybox},
               {"command", {"/bin/sh"}},
               {"stdin", true},
               {"tty", true}}}}}}};
}

}  // namespace

TEST_CASE(
    "kubectl exec -it, attach and top reach a real container through the stream tunnel; a pod of "
    "another node is refused") {
  std::string why;
  auto cri = ContainerdHarness::startOrExplain(why);
  if (!cri) {
    MESSAGE("skipped: " << why);
    return;
  }
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), "system:node:ws-exec", "system:nodes");
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  CloudHubDouble hub(h);
  StreamTunnelDouble tunnel(tls);
  std::string config = (dir / "outpost.yaml").string();
  writeFile(config, "node: {name: ws-exec, state_dir: " + (dir / "state").string() + "}\n" +
                        "runtime: {endpoint: \"" + cri->endpoint() + "\", sandbox_image: \"" +
                        ContainerdHarness::kPause + "\", cgroup_parent: \"" +
                        cri->cgroupParent().substr(1) + "\"}\n" + "device: {enabled: false}\n" +
                        "cloud:\n  transport: websocket\n  heartbeat: 1s\n" +
                        "  reconnect: {base: 100ms, cap: 500ms}\n" + "  websocket: {server: \"" +
                        hub.url() + "\", stream_server: \"" + tunnel.address() + "\"}\n" +
                        "  tls: {ca: " + tls.ca + ", cert: " + tls.clientCert + ", key: " +
                        tls.clientKey + "}\n" + "api: {socket: " + (dir / "outpost.sock").string() +
                        ", metrics_address: \"\"}\n");
  Child agent({outpostd(), "--config", config});
  REQUIRE(tunnel.waitConnected(1, 20s));
  REQUIRE(waitFor([&] { return hub.openConnections() == 1; }, 20s));
  std::string sent = hub.sendObject("insert", "default/pod/shell", shellPod());
  REQUIRE(waitFor([&] { return hub.acked(sent); }, 20s));

  // kubectl top: both containers show up, with the memory they use, once they run.
  const std::string loopMemory =
      R"(container_memory_working_set_bytes{container="loop",namespace="default",pod="shell"} )";
  std::string metrics;
  INFO("the last /metrics/resource: " << metrics);
  auto describe = [&] {
    std::string out, err, st, stErr;
    run({outpostctl(), "-c", config, "describe", "pod", "shell"}, &out, &err);
    run({outpostctl(), "-c", config, "status"}, &st, &stErr);
    return out + err + st + stErr;
  };
  INFO("outpostctl describe pod default/shell: " << describe());
  REQUIRE(waitFor(
      [&] {
        auto s = tunnel.metrics();
        if (!s->waitRemoved(5s)) return false;
        metrics = s->received();
        return metrics.find(loopMemory) != std::string::npos &&
               metrics.find(R"(container="console")") != std::string::npos;
      },
      60s));
  size_t at = metrics.find(loopMemory) + loopMemory.size();
  CHECK(std::stod(metrics.substr(at, metrics.find(' ', at) - at)) > 0);
  CHECK(metrics.find("node_memory_working_set_bytes ") != std::string::npos);
  CHECK(metrics.find(R"(pod_cpu_usage_seconds_total{namespace="default",pod="shell"} )") !=
        std::string::npos);

  {  // exec an interactive sh with a TTY: input, output, a resize, its exit code
    TunnelClient c(tunnel, 1,
                   "/exec/default/shell/loop?command=%2Fbin%2Fsh&stdin=true&stdout=true&tty=true");
    REQUIRE_MESSAGE(c.handshakeError().empty(), c.handshakeError());
    c.send(0, "echo hello-$((6*7))\n");
    CHECK(c.readUntil(1, "hello-42"));
    c.send(4, R"({"Width":123,"Height":45})");
    c.send(0, "stty size\n");
    CHECK(c.readUntil(1, "45 123"));
    c.send(0, "exit 3\n");
    REQUIRE(c.readUntil(3, "}"));
    CHECK(c.got(3).find(R"("reason":"ExitCode","message":"3")") != std::string::npos);
    CHECK(c.session()->waitRemoved());
  }

  {  // attach to the container started with stdin and a TTY
    TunnelClient c(tunnel, 6, "/attach/default/shell/console?stdin=true&stdout=true&tty=true");
    REQUIRE_MESSAGE(c.handshakeError().empty(), c.handshakeError());
    c.send(0, "echo attached-$((40+2))\n");
    CHECK(c.readUntil(1, "attached-42"));
  }

  {  // a pod of another node is refused, and the tunnel goes on
    auto s = tunnel.exec("default", "elsewhere", "app", "command=sh&stdin=true&tty=true");
    REQUIRE(s->waitRemoved());
    CHECK(s->received().find("HTTP/1.1 404 Not Found") == 0);
    CHECK(s->received().find("pod default/elsewhere is not running on this node") !=
          std::string::npos);
    TunnelClient c(tunnel, 1, "/exec/default/shell/loop?command=echo&command=still-here&stdout=1");
    REQUIRE_MESSAGE(c.handshakeError().empty(), c.handshakeError());
    CHECK(c.readUntil(1, "still-here"));
  }

  agent.signal(SIGTERM);
  CHECK(agent.wait(15s) == outpost::agent::kExitOk);
}
