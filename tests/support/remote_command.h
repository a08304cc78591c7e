#pragma once
// The client's side of Kubernetes' remote command protocol over a WebSocket (v4.channel.k8s.io,
// as kubectl exec and attach speak it): each binary message is a channel byte (0 stdin, 1 stdout,
// 2 stderr, 3 error, 4 resize) and that channel's data. Used on a stream already upgraded.

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <string>

namespace outpost::test {

// Opens `acceptor` on 127.0.0.1 at a port the system picks: the test's end of a client's pipe.
inline void listenOnLoopback(boost::asio::ip::tcp::acceptor& acceptor) {
  acceptor.open(boost::asio::ip::tcp::v4());
  acceptor.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
  acceptor.listen();
}

// Connects `ws` to `at` (a read that hangs then fails after 10 s instead of holding the suite) and
// upgrades to `target` asking for v4.channel.k8s.io, `more` adding headers of its own. Returns the
// handshake's error; on success the stream is binary.
inline boost::beast::error_code upgradeRemoteCommand(
    boost::beast::websocket::stream<boost::asio::ip::tcp::socket>& ws,
    const boost::asio::ip::tcp::endpoint& at, const std::string& target,
    std::function<void(boost::beast::websocket::request_type&)> more = {}) {
  namespace websocket = boost::beast::websocket;
  ws.next_layer().connect(at);
  timeval tv{10, 0};
  ::setsockopt(ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ws.set_option(websocket::stream_base::decorator([more](websocket::request_type& req) {
    req.set(boost::beast::http::field::sec_websocket_protocol, "v4.channel.k8s.io");
    if (more) more(req);
  }));
  boost::beast::error_code ec;
  ws.handshake("127.0.0.1", target, ec);
  if (!ec) ws.binary(true);
  return ec;
}

class RemoteCommandChannels {
 public:
  using Stream = boost::beast::websocket::stream<boost::asio::ip::tcp::socket>;
  explicit RemoteCommandChannels(Stream& ws) : ws_(ws) {}

  void send(char channel, const std::string& data) {
    ws_.write(boost::asio::buffer(std::string(1, channel) + data));
  }
  // Reads messages until `want` has arrived on `channel` or `timeout` passes; false then, or when
  // the connection ends (readError() says how).
  bool readUntil(char channel, const std::string& want,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (got_[channel].find(want) != std::string::npos) return true;
      boost::beast::flat_buffer b;
      boost::beast::error_code ec;
      ws_.read(b, ec);
      if (ec) {
        readError_ = ec.message();
        return false;
      }
      std::string msg = boost::beast::buffers_to_string(b.data());
      if (msg.size() > 1) got_[msg[0]] += msg.substr(1);
    }
    return false;
  }
  // Everything that arrived on `channel` so far.
  std::string got(char channel) { return got_[channel]; }
  std::string readError() const { return readError_; }

 private:
  Stream& ws_;
  std::map<char, std::string> got_;
  std::string readError_;
};

}  // namespace outpost::test
