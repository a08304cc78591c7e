// The one MQTT client adapter of the agent, against a real mosquitto and a real RabbitMQ (its MQTT
// plugin): what the cloud link and the device twins rely on, and how it reports what went wrong.

#include "outpost/mqttc/client.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "support/mosquitto.h"
#include "support/rabbitmq.h"
#include "support/test_util.h"

namespace outpost::test {
namespace {

using namespace std::chrono_literals;

// What arrived through a client's callbacks, read from the test thread.
struct Seen {
  std::mutex mu;
  bool connected = false;
  std::vector<std::string> down;
  std::vector<std::tuple<std::string, std::string, bool>> messages;

  mqttc::Callbacks callbacks() {
    mqttc::Callbacks cb;
    cb.connected = [this] {
      std::lock_guard l(mu);
      connected = true;
    };
    cb.down = [this](std::string why) {
      std::lock_guard l(mu);
      down.push_back(std::move(why));
    };
    cb.message = [this](std::string topic, std::string payload, bool retained) {
      std::lock_guard l(mu);
      messages.emplace_back(std::move(topic), std::move(payload), retained);
    };
    return cb;
  }
  template <class F>
  auto with(F&& f) {
    std::lock_guard l(mu);
    return f();
  }
};

// The outcome of one operation, once it is known.
struct Outcome {
  std::mutex mu;
  std::optional<core::Status> status;
  std::function<void(core::Status)> callback() {
    return [this](core::Status s) {
      std::lock_guard l(mu);
      status = std::move(s);
    };
  }
  std::optional<core::Status> get() {
    std::lock_guard l(mu);
    return status;
  }
};

mqttc::ConnectOptions options(const std::string& uri, const std::string& id) {
  mqttc::ConnectOptions o;
  o.uri = uri;
  o.clientId = id;
  o.cleanSession = true;
  o.connectTimeout = 5s;
  return o;
}

// The shared RabbitMQ of this binary, or nullptr when it is not installed (the case is skipped with
// a message); a RabbitMQ that is installed but does not start fails the case.
RabbitMq* rabbitmq() {
  if (std::string why = RabbitMq::unavailableReason(); !why.empty()) {
    MESSAGE("skipped: " << why);
    return nullptr;
  }
  std::string why;
  RabbitMq* broker = RabbitMq::shared(why);
  REQUIRE_MESSAGE(broker, why);
  return broker;
}

// Topics under `t` (unique per case: a shared broker keeps what earlier cases retained).
void oversizedAndUnsubscribe(const std::string& uri, const std::string& t) {
  Seen pub, sub;
  std::vector<std::pair<std::string, size_t>> oversized;
  mqttc::Client publisher(options(uri, "pub"), pub.callbacks());
  REQUIRE(publisher.connect().isOk());
  auto o = options(uri, "sub");
  o.maxPayloadBytes = 1024;
  auto cb = sub.callbacks();
  cb.oversized = [&](std::string topic, size_t bytes) {
    sub.with([&] {
      oversized.emplace_back(std::move(topic), bytes);
      return 0;
    });
  };
  mqttc::Client subscriber(o, cb);
  REQUIRE(subscriber.connect().isOk());
  REQUIRE(waitFor([&] { return sub.with([&] { return sub.connected; }); }));
  REQUIRE(waitFor([&] { return pub.with([&] { return pub.connected; }); }));
  Outcome granted;
  subscriber.subscribe({t + "big/#", t + "small"}, granted.callback());
  REQUIRE(waitFor([&] { return granted.get().has_value(); }));
  publisher.publish(t + "big/one", std::string(8u << 20, 'x'), false, nullptr);
  publisher.publish(t + "big/two", std::string(1024, 'y'), false, nullptr);  // at the limit
  REQUIRE(waitFor([&] { return sub.with([&] { return sub.messages.size() == 1; }); }));
  REQUIRE(waitFor([&] { return sub.with([&] { return oversized.size() == 1; }); }));
  sub.with([&] {
    CHECK(oversized[0].first == t + "big/one");
    CHECK(oversized[0].second == (8u << 20));
    CHECK(std::get<0>(sub.messages[0]) == t + "big/two");
    return 0;
  });
  Outcome gone;
  subscriber.unsubscribe({t + "big/#"}, gone.callback());
  REQUIRE(waitFor([&] { return gone.get().has_value(); }));
  CHECK(gone.get()->isOk());
  publisher.publish(t + "big/three", "z", false, nullptr);
  publisher.publish(t + "small", "s", false, nullptr);
  REQUIRE(waitFor([&] { return sub.with([&] { return sub.messages.size() == 2; }); }));
  sub.with([&] {
    CHECK(std::get<0>(sub.messages[1]) == t + "small");  // nothing from big/ after unsubscribe
    return 0;
  });
}

TEST_CASE(
    "a payload over maxPayloadBytes goes to oversized with its size and is never handed over; "
    "unsubscribe ends a subscription") {
  Mosquitto broker;
  oversizedAndUnsubscribe(broker.uri(), "");
}

TEST_CASE("RabbitMQ: an oversized payload and unsubscribe, as with mosquitto") {
  if (RabbitMq* broker = rabbitmq()) oversizedAndUnsubscribe(broker->uri(), "oversized/");
}

// `filter` the subscription: site/# on mosquitto; RabbitMQ sends retained messages only to a
// filter without wildcards.
void retainedQos1(const std::string& uri, const std::string& t, const std::string& filter) {
  Seen pub, sub;
  mqttc::Client publisher(options(uri, "pub"), pub.callbacks());
  REQUIRE(publisher.connect().isOk());
  REQUIRE(waitFor([&] { return pub.with([&] { return pub.connected; }); }));
  CHECK(publisher.connected());
  Outcome acked;
  publisher.publish(t + "site/a", std::string("v\0w", 3), true, acked.callback());
  REQUIRE(waitFor([&] { return acked.get().has_value(); }));
  CHECK(acked.get()->isOk());

  mqttc::Client subscriber(options(uri, "sub"), sub.callbacks());
  REQUIRE(subscriber.connect().isOk());
  REQUIRE(waitFor([&] { return sub.with([&] { return sub.connected; }); }));
  Outcome granted;
  subscriber.subscribe({t + filter}, granted.callback());
  REQUIRE(waitFor([&] { return sub.with([&] { return !sub.messages.empty(); }); }));
  CHECK(granted.get().has_value());
  CHECK(granted.get()->isOk());
  sub.with([&] {
    CHECK(std::get<0>(sub.messages[0]) == t + "site/a");
    CHECK(std::get<1>(sub.messages[0]) == std::string("v\0w", 3));
    CHECK(std::get<2>(sub.messages[0]));
    return 0;
  });
  // Live, not retained.
  publisher.publish(t + "site/a", "live", false, nullptr);
  REQUIRE(waitFor([&] { return sub.with([&] { return sub.messages.size() == 2; }); }));
  sub.with([&] {
    CHECK(std::get<1>(sub.messages[1]) == "live");
    CHECK_FALSE(std::get<2>(sub.messages[1]));
    return 0;
  });
}

TEST_CASE("a retained QoS 1 message reaches a subscriber with its topic, payload and flag") {
  Mosquitto broker;
  retainedQos1(broker.uri(), "", "site/#");
}

TEST_CASE("RabbitMQ: a retained QoS 1 message reaches a subscriber to its exact topic") {
  if (RabbitMq* broker = rabbitmq()) retainedQos1(broker->uri(), "retained/", "site/a");
}

// What docs/mqtt-link.md tells RabbitMQ's operators: a filter with a wildcard gets no retained
// message (RabbitMQ's MQTT documentation, "Retained Messages and Stores"), only live ones.
TEST_CASE("RabbitMQ: a wildcard subscription gets live messages but no retained one") {
  RabbitMq* broker = rabbitmq();
  if (!broker) return;
  const std::string t = "wildcard/";
  Seen pub, sub;
  mqttc::Client publisher(options(broker->uri(), "pub"), pub.callbacks());
  REQUIRE(publisher.connect().isOk());
  REQUIRE(waitFor([&] { return pub.with([&] { return pub.connected; }); }));
  Outcome acked;
  publisher.publish(t + "site/a", "kept", true, acked.callback());
  REQUIRE(waitFor([&] { return acked.get().has_value(); }));
  REQUIRE(acked.get()->isOk());
  mqttc::Client subscriber(options(broker->uri(), "sub"), sub.callbacks());
  REQUIRE(subscriber.connect().isOk());
  REQUIRE(waitFor([&] { return sub.with([&] { return sub.connected; }); }));
  Outcome granted;
  subscriber.subscribe({t + "site/#"}, granted.callback());
  REQUIRE(waitFor([&] { return granted.get().has_value(); }));
  REQUIRE(granted.get()->isOk());
  // A live message sent after the SUBACK arrives; a retained one would have come before it.
  publisher.publish(t + "site/b", "live", false, nullptr);
  REQUIRE(waitFor([&] { return sub.with([&] { return !sub.messages.empty(); }); }));
  sub.with([&] {
    CHECK(sub.messages.size() == 1);
    CHECK(std::get<0>(sub.messages[0]) == t + "site/b");
    CHECK_FALSE(std::get<2>(sub.messages[0]));
    return 0;
  });
}

// mosquitto (2.0.11) grants every subscription whatever its ACL says; brokers such as AWS IoT Core
// and EMQX refuse one they do not authorise with return code 0x80 in the SUBACK. This peer speaks
// just enough MQTT 3.1.1 to do that: CONNACK to the CONNECT, then a SUBACK that refuses every
// filter starting with "secret/".
class RefusingBroker {
 public:
  RefusingBroker() {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    REQUIRE(::listen(listen_, 1) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~RefusingBroker() {
    ::shutdown(listen_, SHUT_RDWR);
    if (conn_ >= 0) ::shutdown(conn_, SHUT_RDWR);
    thread_.join();
    ::close(listen_);
    if (conn_ >= 0) ::close(conn_);
  }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  bool readExact(std::string& out, size_t n) {
    out.resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::read(conn_, out.data() + got, n - got);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  // One packet: its first byte and its body.
  bool readPacket(uint8_t& type, std::string& body) {
    std::string b;
    if (!readExact(b, 1)) return false;
    type = static_cast<uint8_t>(b[0]);
    size_t length = 0, shift = 0;
    do {
      if (!readExact(b, 1)) return false;
      length |= (static_cast<size_t>(b[0]) & 0x7f) << shift;
      shift += 7;
    } while (static_cast<uint8_t>(b[0]) & 0x80);
    return readExact(body, length);
  }
  void serve() {
    conn_ = ::accept(listen_, nullptr, nullptr);
    if (conn_ < 0) return;
    uint8_t type;
    std::string body;
    while (readPacket(type, body)) {
      std::string reply;
      if ((type >> 4) == 1) {
        reply = std::string("\x20\x02\x00\x00", 4);  // CONNACK, accepted
      } else if ((type >> 4) == 8) {
        std::string codes;
        for (size_t i = 2; i + 2 <= body.size();) {
          size_t n = (static_cast<uint8_t>(body[i]) << 8) | static_cast<uint8_t>(body[i + 1]);
          std::string filter = body.substr(i + 2, n);
          codes += filter.rfind("secret/", 0) == 0 ? '\x80' : '\x01';
          i += 2 + n + 1;
        }
        reply = std::string(1, '\x90') + static_cast<char>(2 + codes.size()) + body.substr(0, 2) +
                codes;  // SUBACK with the packet id
      } else if ((type >> 4) == 12) {
        reply = std::string("\xd0\x00", 2);  // PINGRESP
      } else if ((type >> 4) == 14) {
        return;  // DISCONNECT
      }
      if (!reply.empty() && ::write(conn_, reply.data(), reply.size()) < 0) return;
    }
  }

  int listen_ = -1;
  int conn_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST_CASE("a subscription the broker refuses fails with the filter named") {
  RefusingBroker broker;
  Seen seen;
  mqttc::Client client(options(broker.uri(), "c"), seen.callbacks());
  REQUIRE(client.connect().isOk());
  REQUIRE(waitFor([&] { return seen.with([&] { return seen.connected; }); }));
  Outcome both;
  client.subscribe({"allowed/x", "secret/#"}, both.callback());
  REQUIRE(waitFor([&] { return both.get().has_value(); }));
  CHECK(both.get()->code() == core::Code::kPermissionDenied);
  CHECK(both.get()->message().find("secret/#") != std::string::npos);
  CHECK(both.get()->message().find("allowed/x") == std::string::npos);
  Outcome one;
  client.subscribe({"secret/y"}, one.callback());
  REQUIRE(waitFor([&] { return one.get().has_value(); }));
  CHECK(one.get()->code() == core::Code::kPermissionDenied);
  Outcome fine;
  client.subscribe({"allowed/y"}, fine.callback());
  REQUIRE(waitFor([&] { return fine.get().has_value(); }));
  CHECK(fine.get()->isOk());
}

TEST_CASE("a broker that is not there is reported through down(), naming the address") {
  Seen seen;
  std::string uri = "tcp://127.0.0.1:" + std::to_string(freePort());
  mqttc::Client client(options(uri, "c"), seen.callbacks());
  REQUIRE(client.connect().isOk());
  REQUIRE(waitFor([&] { return seen.with([&] { return !seen.down.empty(); }); }));
  seen.with([&] {
    CHECK(seen.down[0].find("connect to " + uri + " failed") != std::string::npos);
    return 0;
  });
  CHECK_FALSE(client.connected());
  // Operations before a connection fail at once instead of waiting.
  Outcome published;
  client.publish("t", "x", false, published.callback());
  REQUIRE(waitFor([&] { return published.get().has_value(); }));
  CHECK_FALSE(published.get()->isOk());
}

TEST_CASE("an address the library cannot use is refused by connect() with the address named") {
  Seen seen;
  mqttc::Client client(options("http://127.0.0.1:1", "c"), seen.callbacks());
  auto s = client.connect();
  REQUIRE_FALSE(s.isOk());
  CHECK(s.code() == core::Code::kInvalidArgument);
  CHECK(s.message().find("http://127.0.0.1:1") != std::string::npos);
}

// A client that disconnects cleanly: no will; the watcher stays connected for the caller.
void noWillOnCleanDisconnect(const std::string& uri, const std::string& t, mqttc::Client& watch,
                             Seen& watcher) {
  REQUIRE(watch.connect().isOk());
  REQUIRE(waitFor([&] { return watcher.with([&] { return watcher.connected; }); }));
  Outcome subscribed;
  watch.subscribe({t + "will/#"}, subscribed.callback());
  REQUIRE(waitFor([&] { return subscribed.get().has_value(); }));
  {
    Seen seen;
    auto o = options(uri, "clean");
    o.willTopic = t + "will/clean";
    o.willPayload = "gone";
    o.willRetained = false;
    mqttc::Client client(o, seen.callbacks());
    REQUIRE(client.connect().isOk());
    REQUIRE(waitFor([&] { return seen.with([&] { return seen.connected; }); }));
  }  // the destructor disconnects cleanly
  // A marker sent after the disconnect arrives; a will would have come before it.
  watch.publish(t + "will/marker", "after", false, nullptr);
  REQUIRE(waitFor([&] { return watcher.with([&] { return !watcher.messages.empty(); }); }));
  watcher.with([&] {
    CHECK(std::get<0>(watcher.messages[0]) == t + "will/marker");
    return 0;
  });
}

TEST_CASE("a clean disconnect publishes no will, and a lost connection is reported") {
  Mosquitto broker;
  Seen watcher;
  mqttc::Client watch(options(broker.uri(), "watch"), watcher.callbacks());
  noWillOnCleanDisconnect(broker.uri(), "", watch, watcher);
  broker.stop();
  REQUIRE(waitFor([&] { return watcher.with([&] { return !watcher.down.empty(); }); }));
  watcher.with([&] {
    CHECK(watcher.down[0].rfind("connection lost", 0) == 0);
    return 0;
  });
  CHECK_FALSE(watch.connected());
}

// A TCP forwarder to a broker whose connection can be cut as a network failure does: no DISCONNECT,
// the sockets reset. One connection at a time.
class CuttableProxy {
 public:
  explicit CuttableProxy(int brokerPort) : brokerPort_(brokerPort) {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    REQUIRE(::listen(listen_, 1) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~CuttableProxy() {
    stop_ = true;
    thread_.join();
    ::close(listen_);
  }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  void cut() { cut_ = true; }
  bool wasCut() const { return done_; }

 private:
  static void reset(int fd) {
    linger l{1, 0};  // close with RST
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
  }
  void serve() {
    int client = -1, server = -1;
    char buf[65536];
    while (!stop_) {
      if (client >= 0 && cut_) {
        reset(client);
        reset(server);
        client = server = -1;
        done_ = true;
      }
      std::vector<pollfd> fds = {{listen_, POLLIN, 0}};
      if (client >= 0) {
        fds.push_back({client, POLLIN, 0});
        fds.push_back({server, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int c = ::accept(listen_, nullptr, nullptr);
        if (client >= 0 || c < 0) {
          if (c >= 0) ::close(c);
          continue;
        }
        server = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in b{};
        b.sin_family = AF_INET;
        b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        b.sin_port = htons(static_cast<uint16_t>(brokerPort_));
        if (::connect(server, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) {
          ::close(server);
          ::close(c);
          continue;
        }
        client = c;
        continue;
      }
      for (size_t i = 1; i < fds.size() && client >= 0; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        int to = fds[i].fd == client ? server : client;
        if (n <= 0 || ::write(to, buf, static_cast<size_t>(n)) != n) {
          ::close(client);
          ::close(server);
          client = server = -1;
        }
      }
    }
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
  }

  int brokerPort_;
  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, cut_{false}, done_{false};
  std::thread thread_;
};

// A connection lost without DISCONNECT: the broker publishes the retained will, which a client that
// subscribes later still gets (an exact topic, so RabbitMQ sends it too).
void willOnLostConnection(const std::string& uri, int port, const std::string& t) {
  CuttableProxy proxy(port);
  Seen seen;
  auto o = options(proxy.uri(), t + "lost");
  o.willTopic = t + "will/lost";
  o.willPayload = "false";
  o.willRetained = true;
  mqttc::Client client(o, seen.callbacks());
  REQUIRE(client.connect().isOk());
  REQUIRE(waitFor([&] { return seen.with([&] { return seen.connected; }); }));
  proxy.cut();
  REQUIRE(waitFor([&] { return proxy.wasCut(); }));
  Seen late;
  mqttc::Client reader(options(uri, t + "reader"), late.callbacks());
  REQUIRE(reader.connect().isOk());
  REQUIRE(waitFor([&] { return late.with([&] { return late.connected; }); }));
  Outcome granted;
  reader.subscribe({t + "will/lost"}, granted.callback());
  REQUIRE(waitFor([&] { return late.with([&] { return !late.messages.empty(); }); }));
  late.with([&] {
    CHECK(std::get<0>(late.messages[0]) == t + "will/lost");
    CHECK(std::get<1>(late.messages[0]) == "false");
    CHECK(std::get<2>(late.messages[0]));
    return 0;
  });
}

TEST_CASE("a lost connection makes the broker publish the retained will") {
  Mosquitto broker;
  willOnLostConnection(broker.uri(), broker.port(), "");
}

TEST_CASE("RabbitMQ: a lost connection makes the broker publish the retained will") {
  if (RabbitMq* broker = rabbitmq()) willOnLostConnection(broker->uri(), broker->port(), "lost/");
}

TEST_CASE("RabbitMQ: a clean disconnect publishes no will") {
  RabbitMq* broker = rabbitmq();
  if (!broker) return;
  Seen watcher;
  mqttc::Client watch(options(broker->uri(), "watch"), watcher.callbacks());
  noWillOnCleanDisconnect(broker->uri(), "clean/", watch, watcher);
}

TEST_CASE("a callback may call the client: a publish from down() fails at once, it does not hang") {
  Mosquitto broker;
  mqttc::Client* self = nullptr;
  std::atomic<bool> connected{false}, downSeen{false};
  Outcome fromDown;
  mqttc::Callbacks cb;
  cb.connected = [&] { connected = true; };
  cb.down = [&](std::string) {
    if (!downSeen.exchange(true)) self->publish("t", "x", false, fromDown.callback());
  };
  mqttc::Client client(options(broker.uri(), "c"), cb);
  self = &client;
  REQUIRE(client.connect().isOk());
  REQUIRE(waitFor([&] { return connected.load(); }));
  broker.stop();
  REQUIRE(waitFor([&] { return fromDown.get().has_value(); }));
  CHECK_FALSE(fromDown.get()->isOk());
}

}  // namespace
}  // namespace outpost::test
