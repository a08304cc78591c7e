// The relay of exec and attach sessions (stream/src/relay.cc) against the real containerd's
// streaming server: a Beast WebSocket client speaks Kubernetes' remote-command protocol
// (v4.channel.k8s.io) through a loopback pipe whose far end is the relay, as the cloud would
// through the tunnel. Plus what the relay refuses before it connects.

#include "outpost/stream/relay.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <mutex>
#include <thread>

#include "cri_env.h"
#include "outpost/deploy/cri_runtime.h"
#include "support/remote_command.h"
#include "support/test_util.h"

namespace outpost::test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Headers = std::vector<std::pair<std::string, std::string>>;

// A pod with one container on the shared containerd, removed at the end.
struct Pod {
  Pod(deploy::Runtime& runtime, const std::string& name, std::vector<std::string> command,
      bool interactive)
      : rt(runtime) {
    deploy::PodSandboxConfig sb;
    sb.name = name;
    sb.uid = name + "-uid";
    sb.podNamespace = "default";
    sb.hostNetwork = true;
    sb.cgroupParent = CriEnv::get().harness().cgroupParent() + "/pod" + name;
    auto id = rt.runPodSandbox(sb, "");
    REQUIRE_MESSAGE(id.isOk(), id.status().toString());
    sandbox = *id;
    deploy::ContainerConfig cc;
    cc.name = "main";
    cc.image = ContainerdHarness::kBusybox;
    cc.command = std::move(command);
    cc.hostNetwork = true;
    cc.stdin = interactive;
    cc.tty = interactive;
    auto cid = rt.createContainer(sandbox, cc, sb);
    REQUIRE_MESSAGE(cid.isOk(), cid.status().toString());
    container = *cid;
    REQUIRE(rt.startContainer(container).isOk());
  }
  ~Pod() {
    rt.stopContainer(container, 1s).ignore();  // cleanup: the sandbox goes next either way
    rt.removeContainer(container).ignore();    // cleanup
    rt.stopPodSandbox(sandbox).ignore();       // cleanup
    rt.removePodSandbox(sandbox).ignore();     // cleanup
  }
  deploy::Runtime& rt;
  std::string sandbox;
  std::string container;
};

// A loopback pipe: a Beast WebSocket client at one end, the relay at the other. The test's
// server side reads the client's upgrade request, starts the relay to `runtimeUrl` with its method
// and headers, and pumps bytes both ways.
class RelayPipe {
 public:
  explicit RelayPipe(std::string runtimeUrl, Headers extra = {})
      : runtimeUrl_(std::move(runtimeUrl)), extra_(std::move(extra)) {
    listenOnLoopback(acceptor_);
    server_ = std::thread([this] { serve(); });
    beast::error_code ec = upgradeRemoteCommand(
        ws_, acceptor_.local_endpoint(), "/from/the/cloud", [](websocket::request_type& req) {
          req.set(http::field::cookie, "session=from-the-cloud");
        });
    if (ec) {
      beast::error_code ignored;
      ws_.next_layer().close(ignored);
      server_.join();
      FAIL("handshake through the relay: ", ec.message(), " ", serveError_);
    }
  }
  ~RelayPipe() {
    beast::error_code ec;
    ws_.next_layer().close(ec);
    if (relay_) relay_->close();
    server_.join();
    relay_.reset();
  }

  void send(char channel, const std::string& data) { channels_.send(channel, data); }
  // Reads until `want` arrives on `channel` (1 stdout, 2 stderr, 3 error) or 10 s pass.
  bool readUntil(char channel, const std::string& want) {
    bool ok = channels_.readUntil(channel, want);
    if (!ok && !channels_.readError().empty()) MESSAGE("websocket read: " << channels_.readError());
    return ok;
  }
  std::string got(char channel) { return channels_.got(channel); }
  std::string doneReason() {
    std::lock_guard lock(mu_);
    return reason_;
  }
  int doneCalls() const { return doneCalls_; }

 private:
  // The server side, on its own thread: no doctest assertion here (they belong to the test's
  // thread); what went wrong is kept in serveError_ and makes the client's handshake fail.
  void serve() {
    acceptor_.accept(peer_);
    beast::flat_buffer buffer;
    http::request<http::empty_body> req;
    beast::error_code ec;
    http::read(peer_, buffer, req, ec);
    if (ec) {
      setError("reading the client's request: " + ec.message());
      return;
    }
    Headers headers = extra_;
    for (const auto& f : req)
      headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    auto relay = stream::UpgradeRelay::start(
        runtimeUrl_, std::string(req.method_string()), headers,
        [this](std::string bytes) {
          beast::error_code ignored;
          asio::write(peer_, asio::buffer(bytes), ignored);
        },
        [this](std::string reason) {
          {
            std::lock_guard lock(mu_);
            reason_ = std::move(reason);
          }
          ++doneCalls_;
          beast::error_code ignored;
          peer_.shutdown(tcp::socket::shutdown_send, ignored);
        });
    if (!relay.isOk()) {
      setError(relay.status().toString());
      peer_.close(ec);
      return;
    }
    relay_ = *relay;
    if (buffer.size() > 0) relay_->write(beast::buffers_to_string(buffer.data()));
    std::array<char, 16384> in{};
    for (;;) {
      size_t n = peer_.read_some(asio::buffer(in), ec);
      if (n > 0) relay_->write(std::string(in.data(), n));
      if (ec) break;
    }
    relay_->close();
    waitFor([&] { return doneCalls_ > 0; }, 10s);
  }
  void setError(const std::string& e) {
    std::lock_guard lock(mu_);
    serveError_ = e;
  }

  std::string runtimeUrl_;
  Headers extra_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  websocket::stream<tcp::socket> ws_{io_};
  std::thread server_;
  std::shared_ptr<stream::UpgradeRelay> relay_;
  RemoteCommandChannels channels_{ws_};
  std::mutex mu_;
  std::string reason_;
  std::atomic<int> doneCalls_{0};
  std::string serveError_;
  tcp::socket peer_{io_};
};

struct RelayFixture {
  RelayFixture() : env(CriEnv::get()) {
    if (!env.available()) return;
    auto rt = deploy::makeCriRuntime({env.harness().endpoint(), 15s, 15s});
    REQUIRE(rt.isOk());
    runtime = std::move(rt).value();
  }
  CriEnv& env;
  deploy::RuntimePtr runtime;
};

#define REQUIRE_CONTAINERD(f)                 \
  if (!(f).env.available()) {                 \
    MESSAGE("skipped: " << (f).env.reason()); \
    return;                                   \
  }

constexpr const char* kLoop = "trap 'exit 0' TERM; while true; do sleep 1; done";

TEST_CASE_FIXTURE(RelayFixture,
                  "exec of an interactive sh with a TTY through the relay: input, output, a "
                  "resize, and exit 3 on the error channel") {
  REQUIRE_CONTAINERD(*this);
  Pod pod(*runtime, "relay-tty", {"/bin/sh", "-c", kLoop}, false);
  auto url = runtime->exec({pod.container, {"/bin/sh"}, true, true, false, true});
  REQUIRE_MESSAGE(url.isOk(), url.status().toString());
  MESSAGE("containerd's exec URL: " << *url);
  RelayPipe pipe(*url);
  pipe.send(0, "echo hello-$((6*7))\n");
  CHECK(pipe.readUntil(1, "hello-42"));
  pipe.send(4, R"({"Width":123,"Height":45})");
  pipe.send(0, "stty size\n");
  CHECK(pipe.readUntil(1, "45 123"));
  pipe.send(0, "exit 3\n");
  REQUIRE(pipe.readUntil(3, "}"));
  std::string status = pipe.got(3);
  CHECK(status.find(R"("status":"Failure")") != std::string::npos);
  CHECK(status.find(R"("reason":"ExitCode","message":"3")") != std::string::npos);
  CHECK(waitFor([&] { return pipe.doneCalls() == 1; }));
  CHECK(pipe.doneReason().empty());
}

TEST_CASE_FIXTURE(RelayFixture,
                  "exec without a TTY through the relay: stdout and stderr apart, success") {
  REQUIRE_CONTAINERD(*this);
  Pod pod(*runtime, "relay-pipes", {"/bin/sh", "-c", kLoop}, false);
  auto url = runtime->exec(
      {pod.container, {"/bin/sh", "-c", "echo to-out; echo to-err >&2"}, false, true, true, false});
  REQUIRE(url.isOk());
  RelayPipe pipe(*url);
  REQUIRE(pipe.readUntil(3, "}"));
  CHECK(pipe.got(3).find(R"("status":"Success")") != std::string::npos);
  CHECK(pipe.got(1) == "to-out\n");
  CHECK(pipe.got(2) == "to-err\n");
}

TEST_CASE_FIXTURE(RelayFixture, "attach to a container started with stdin and a TTY") {
  REQUIRE_CONTAINERD(*this);
  Pod pod(*runtime, "relay-attach", {"/bin/sh"}, true);
  auto url = runtime->attach({pod.container, {}, true, true, false, true});
  REQUIRE(url.isOk());
  RelayPipe pipe(*url);
  pipe.send(0, "echo attached-$((40+2))\n");
  CHECK(pipe.readUntil(1, "attached-42"));
}

TEST_CASE("the relay refuses a runtime URL that is not http on loopback with an exec path") {
  auto refused = [](const std::string& url) {
    auto r = stream::UpgradeRelay::start(
        url, "GET", {}, [](std::string) {}, [](std::string) {});
    return !r.isOk() && r.status().code() == core::Code::kInvalidArgument &&
           r.status().message().find("runtime streaming URL refused") != std::string::npos;
  };
  CHECK(refused("http://10.1.2.3:10010/exec/abc"));
  CHECK(refused("http://192.168.1.1:10010/exec/abc"));
  CHECK(refused("http://localhost:10010/exec/abc"));
  CHECK(refused("http://127.0.0.1.example.com:10010/exec/abc"));
  CHECK(refused("https://127.0.0.1:10010/exec/abc"));
  CHECK(refused("http://127.0.0.1/exec/abc"));
  CHECK(refused("http://127.0.0.1:0/exec/abc"));
  CHECK(refused("http://127.0.0.1:65536/exec/abc"));
  CHECK(refused("http://127.0.0.1:10010/containerLogs/abc"));
  CHECK(refused("http://127.0.0.1:10010/exec/"));
  CHECK(refused("http://127.0.0.1:10010/exec/abc/../../x"));
  CHECK(refused("http://127.0.0.1:10010/exec/abc?x=1"));
  CHECK(refused("http://127.0.0.1:10010/exec/a\r\nHost: x"));
  CHECK(refused("http://user@127.0.0.1:10010/exec/abc"));
  auto ok = stream::parseRuntimeUrl("http://127.0.0.1:10010/exec/Ab-_9");
  REQUIRE(ok.isOk());
  CHECK(ok->host == "127.0.0.1");
  CHECK(ok->port == 10010);
  CHECK(ok->path == "/exec/Ab-_9");
  CHECK(stream::parseRuntimeUrl("http://[::1]:1/attach/x").isOk());
}

TEST_CASE(
    "only the upgrade headers reach the runtime; a control character in a header is "
    "refused") {
  auto url = stream::parseRuntimeUrl("http://127.0.0.1:4242/exec/tok");
  REQUIRE(url.isOk());
  auto req = stream::upgradeRequest(*url, "GET",
                                    {{"Host", "cloud.example"},
                                     {"Cookie", "session=1"},
                                     {"Authorization", "Bearer x"},
                                     {"connection", "Upgrade"},
                                     {"Upgrade", "websocket"},
                                     {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                     {"Sec-WebSocket-Version", "13"},
                                     {"Sec-WebSocket-Protocol", "v4.channel.k8s.io"},
                                     {"X-Stream-Protocol-Version", "v4.channel.k8s.io"},
                                     {"X-Stream-Protocol-Version", "v3.channel.k8s.io"}});
  REQUIRE(req.isOk());
  CHECK(*req ==
        "GET /exec/tok HTTP/1.1\r\nHost: 127.0.0.1:4242\r\nConnection: Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n"
        "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
        "X-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\n");
  auto crlf = stream::upgradeRequest(*url, "GET", {{"Upgrade", "websocket\r\nCookie: x"}});
  REQUIRE_FALSE(crlf.isOk());
  CHECK(crlf.status().code() == core::Code::kInvalidArgument);
  CHECK(crlf.status().message().find("header Upgrade") != std::string::npos);
  CHECK_FALSE(stream::upgradeRequest(*url, "GET", {{"Cookie", std::string("a\0b", 3)}}).isOk());
  CHECK_FALSE(stream::upgradeRequest(*url, "GET", {{"Upgrade", std::string(2000, 'a')}}).isOk());
  CHECK_FALSE(stream::upgradeRequest(*url, "DELETE", {}).isOk());
  CHECK_FALSE(stream::upgradeRequest(*url, "GET /x HTTP/1.1\r\n", {}).isOk());
}

TEST_CASE(
    "a runtime that does not read ends the session with a clear reason, not a growing "
    "buffer") {
  asio::io_context io;
  tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::atomic<int> doneCalls{0};
  std::string reason;
  std::mutex mu;
  auto relay = stream::UpgradeRelay::start(
      "http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/exec/tok", "POST",
      {}, [](std::string) {},
      [&](std::string r) {
        std::lock_guard lock(mu);
        reason = std::move(r);
        ++doneCalls;
      });
  REQUIRE(relay.isOk());
  tcp::socket peer(io);
  silent.accept(peer);  // accepted, never read
  const std::string chunk(256 * 1024, 'x');
  for (int i = 0; i < 1024 && doneCalls == 0; ++i) (*relay)->write(chunk);
  REQUIRE(waitFor([&] { return doneCalls > 0; }));
  {
    std::lock_guard lock(mu);
    CHECK(reason == "the runtime does not read what the cloud sends: more than 1 MiB waits for it");
  }
  (*relay)->close();
  (*relay)->write("more");
  CHECK(doneCalls == 1);
}

TEST_CASE("closing a relay ends it once with an empty reason; a closed port is UNAVAILABLE") {
  asio::io_context io;
  tcp::acceptor server(io, {asio::ip::make_address("127.0.0.1"), 0});
  auto port = server.local_endpoint().port();
  std::atomic<int> doneCalls{0};
  std::string reason = "unset";
  auto relay = stream::UpgradeRelay::start(
      "http://127.0.0.1:" + std::to_string(port) + "/attach/tok", "GET", {}, [](std::string) {},
      [&](std::string r) {
        reason = std::move(r);
        ++doneCalls;
      });
  REQUIRE(relay.isOk());
  tcp::socket peer(io);
  server.accept(peer);
  (*relay)->close();
  (*relay)->close();
  REQUIRE(waitFor([&] { return doneCalls > 0; }));
  CHECK(reason.empty());
  relay->reset();
  CHECK(doneCalls == 1);
  server.close();
  auto down = stream::UpgradeRelay::start(
      "http://127.0.0.1:" + std::to_string(port) + "/exec/t", "GET", {}, [](std::string) {},
      [](std::string) {});
  REQUIRE_FALSE(down.isOk());
  CHECK(down.status().code() == core::Code::kUnavailable);
}

}  // namespace
}  // namespace outpost::test
