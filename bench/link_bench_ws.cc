// B3, WebSocket column (see link_bench_ws.h and docs/benchmarks.md). Each run starts a fresh
// CloudHub double (its own thread, TLS WebSocket server on 127.0.0.1 port 0) and either our link
// with a fresh store in a temp dir or the echo client, sends the warm-up and then the timed
// messages through the double's send() and takes each message's time from the send to the
// double's ack listener.
#include "link_bench_ws.h"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "bench_util.h"
#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/websocket_link.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/cloudhub_double.h"
#include "support/mosquitto.h"
#include "support/test_util.h"

namespace outpost::bench {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using boost::system::error_code;
using nlohmann::json;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kNode = "bench-ws";

struct WsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fail(const std::string& what) { throw WsError("websocket: " + what); }

// The value of `"field":"..."` in a JSON text, without parsing it all ("" when absent).
std::string_view stringField(std::string_view text, std::string_view quotedField) {
  auto at = text.find(quotedField);
  if (at == std::string_view::npos) return {};
  auto start = at + quotedField.size();
  auto end = text.find('"', start);
  if (end == std::string_view::npos) return {};
  return text.substr(start, end - start);
}

// ---- the echo: a minimal WebSocket client that acks every frame at once and stores nothing

class EchoClient {
 public:
  EchoClient(const test::TlsFiles& tls, int port) {
    ctx_.set_verify_mode(ssl::verify_peer);
    ctx_.load_verify_file(tls.ca);
    ctx_.use_certificate_chain_file(tls.clientCert);
    ctx_.use_private_key_file(tls.clientKey, ssl::context::pem);
    ws_.emplace(ioc_, ctx_);
    auto& socket = beast::get_lowest_layer(*ws_);
    socket.connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    ws_->next_layer().set_verify_callback(ssl::host_name_verification("127.0.0.1"));
    error_code ec;
    ws_->next_layer().handshake(ssl::stream_base::client, ec);
    if (ec) fail("echo client: TLS handshake: " + ec.message());
    std::string project = cloudhub::kDefaultProjectId;
    ws_->set_option(websocket::stream_base::decorator([project](websocket::request_type& req) {
      req.set("node_id", kNode);
      req.set("project_id", project);
      req.set("ConnectionUse", "msg");
    }));
    ws_->handshake("127.0.0.1:" + std::to_string(port),
                   "/" + project + "/" + std::string(kNode) + "/events", ec);
    if (ec) fail("echo client: WebSocket upgrade: " + ec.message());
    read();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~EchoClient() {
    net::post(ioc_, [this] {
      error_code ec;
      beast::get_lowest_layer(*ws_).shutdown(tcp::socket::shutdown_both, ec);
      beast::get_lowest_layer(*ws_).close(ec);
    });
    thread_.join();
  }
  EchoClient(const EchoClient&) = delete;
  EchoClient& operator=(const EchoClient&) = delete;

 private:
  void read() {
    ws_->async_read(buffer_, [this](error_code ec, std::size_t) {
      if (ec) return;  // closed
      std::string text = beast::buffers_to_string(buffer_.data());
      buffer_.consume(buffer_.size());
      // What the link sends once it has stored a cloud message: the same ack envelope.
      cloudhub::Envelope a;
      a.header.msgId = cloudhub::newMessageId();
      a.header.parentMsgId = std::string(stringField(text, "\"msg_id\":\""));
      a.header.timestamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
      a.route.source = std::string(stringField(text, "\"source\":\""));
      a.route.group = std::string(stringField(text, "\"group\":\""));
      a.route.operation = "response";
      a.route.resource = std::string(stringField(text, "\"resource\":\""));
      cloudhub::setContentString(a, "OK");
      writes_.push_back(cloudhub::encode(a, cloudhub::Encoding::kJson));
      if (writes_.size() == 1) write();
      read();
    });
  }
  void write() {
    ws_->text(true);
    ws_->async_write(net::buffer(writes_.front()), [this](error_code ec, std::size_t) {
      if (ec) return;
      writes_.pop_front();
      if (!writes_.empty()) write();
    });
  }

  net::io_context ioc_;
  ssl::context ctx_{ssl::context::tls_client};
  std::optional<websocket::stream<beast::ssl_stream<tcp::socket>>> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::string> writes_;
  std::thread thread_;
};

// ---- ours: a real SqliteStore in a temp dir and the WebSocket link, wired as agent/ does

struct Agent {
  Agent(const std::filesystem::path& dir, cloudhub::WebsocketLinkOptions o) {
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    so.commitWindow = 0ms;  // the agent's default (store.commit_window)
    auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    if (!s.isOk()) fail("opening the store: " + s.status().toString());
    store = std::move(s).value();
    link = cloudhub::makeWebsocketLink(std::move(o), *store, bus, clock, logging, metrics);
    if (auto st = link->start(); !st.isOk()) fail("starting the link: " + st.toString());
  }
  ~Agent() {
    link->stop();
    link.reset();
    store.reset();
  }
  bool connected() const { return link->status().state == cloudhub::LinkState::kConnected; }

  core::SystemClock clock;
  core::Bus bus;
  core::Logging logging{core::Logging::Options{core::LogLevel::kError, false, ""}};
  core::MetricsRegistry metrics;
  std::unique_ptr<metadb::SqliteStore> store;
  cloudhub::CloudLinkPtr link;
};

// ---- one phase (warm-up or timed): a window of messages not yet acked

struct Tracker {
  explicit Tracker(size_t n) : sent(n), acked(n), got(n, 0) {}
  std::vector<SteadyClock::time_point> sent, acked;
  std::vector<char> got;
  std::mutex mu;
  std::condition_variable cv;
  size_t inflight = 0;
  size_t done = 0;
  size_t repeated = 0;  // acks of a message already acked (a resend acked again)

  void complete(size_t i) {
    auto t = SteadyClock::now();
    std::lock_guard l(mu);
    if (got[i]) {
      ++repeated;
      return;
    }
    got[i] = 1;
    acked[i] = t;
    --inflight;
    ++done;
    cv.notify_all();
  }
};

// The insert envelope of §1 as CloudHub sends it (msg_id set here, so acks can be matched before
// send() returns; the double stamps the timestamp as it sends).
struct Insert {
  std::string msgId;
  json envelope;
};

std::vector<Insert> makeInserts(const WsColumnOptions& o, const std::string& prefix, size_t n) {
  std::vector<Insert> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string name = prefix + std::to_string(i);
    std::string version = std::to_string(1700000000000 + static_cast<int64_t>(i));
    std::string id = cloudhub::newMessageId();
    json env = {{"header", {{"msg_id", id}, {"resourceversion", version}}},
                {"route",
                 {{"source", "edgecontroller"},
                  {"group", "resource"},
                  {"operation", "insert"},
                  {"resource", "default/pod/" + name}}},
                {"content", json::parse(o.podObject(name, version, i))}};
    out.push_back({id, std::move(env)});
  }
  return out;
}

// What a run checked about the traffic besides the timed messages.
struct RunChecks {
  int resends = 0;          // the double's resends during the whole run
  size_t repeatedAcks = 0;  // acks of timed messages already acked
  size_t otherFrames = 0;   // frames from the edge between the first send and the last ack that
                            // are not acks of timed messages (keepalives, lease, node, ...)
  std::vector<std::string> otherKinds;  // their "operation resource", for the JSON
};

}  // namespace

struct WebsocketColumn::State {
  WsColumnOptions options;
  test::TempDir tlsDir;
  test::TlsFiles tls;
  std::map<std::string, std::vector<RunChecks>> checks;  // scenario -> one per rep

  explicit State(WsColumnOptions o)
      : options(std::move(o)),
        tls(test::makeTlsFiles(tlsDir.path(), std::string("system:node:") + kNode,
                               "system:nodes")) {}

  WsSample run(const std::string& scenario, bool ours, size_t n, size_t window) {
    test::CloudHubDoubleOptions ho;
    ho.caFile = tls.ca;
    ho.certFile = tls.serverCert;
    ho.keyFile = tls.serverKey;
    ho.requireCn = std::string("system:node:") + kNode;  // resendInterval: CloudHub's 5 s
    test::CloudHubDouble hub(ho);

    auto warm = makeInserts(options, "w", options.warmup);
    auto timed = makeInserts(options, "p", n);
    std::mutex phaseMu;
    Tracker* current = nullptr;
    std::unordered_map<std::string, size_t> byMsgId;
    auto setPhase = [&](Tracker* t, const std::vector<Insert>& msgs) {
      std::lock_guard l(phaseMu);
      current = t;
      byMsgId.clear();
      for (size_t i = 0; i < msgs.size(); ++i) byMsgId[msgs[i].msgId] = i;
    };
    hub.setAckListener([&](const std::string& id) {
      std::lock_guard l(phaseMu);
      auto it = byMsgId.find(id);
      if (current && it != byMsgId.end()) current->complete(it->second);
    });

    std::unique_ptr<test::TempDir> agentDir;
    std::unique_ptr<Agent> agent;
    std::unique_ptr<EchoClient> echo;
    if (ours) {
      agentDir = std::make_unique<test::TempDir>();
      cloudhub::WebsocketLinkOptions o;  // as agent/src/modules.cc fills it, defaults otherwise
      o.nodeName = kNode;
      o.server = hub.url();
      o.caFile = tls.ca;
      o.certFile = tls.clientCert;
      o.keyFile = tls.clientKey;
      // The periodic traffic (keepalive + ping every 15 s, lease renewal and node query every
      // 10 s) is moved past the longest run (120 s bound), so none of it lands in a timed run;
      // checked below from what the double received.
      o.heartbeat = 10min;
      o.leaseInterval = 10min;
      o.nodeQueryInterval = 10min;
      agent = std::make_unique<Agent>(agentDir->path(), o);
      if (!test::waitFor([&] { return agent->connected(); }, 15s)) fail("the link did not connect");
      // The start-up sequence of §1 answered and its answers acked (node insert and query, lease
      // query and insert) and the node patch sent, before the first message.
      const std::string node = std::string("default/node/") + kNode;
      const std::string lease = std::string("kube-node-lease/lease/") + kNode;
      bool started = hub.waitFor(
          [&](const std::vector<test::ReceivedFrame>&) {
            return hub.receivedWhere("response", node).size() >= 2 &&
                   hub.receivedWhere("response", lease).size() >= 2 &&
                   !hub.receivedWhere("patch", std::string("default/nodepatch/") + kNode).empty();
          },
          15s);
      if (!started) fail("the link's start-up sequence did not complete");
    } else {
      echo = std::make_unique<EchoClient>(tls, hub.port());
      if (!hub.waitFor([&](const auto&) { return hub.openConnections() == 1; }, 15s))
        fail("the echo client did not connect");
    }

    auto diagnose = [&]() -> std::string {
      std::string s = "; double: " + std::to_string(hub.unacked().size()) + " unacked, " +
                      std::to_string(hub.resends()) + " resends";
      if (agent) {
        auto st = agent->link->status();
        s += "; link: " + std::to_string(st.messagesIn) + " in, " + std::to_string(st.messagesOut) +
             " out, " + std::to_string(st.messagesInvalid) + " invalid";
      }
      return s;
    };
    Tracker warmT(warm.size());
    setPhase(&warmT, warm);
    drive(hub, warm, warmT, window, scenario + ": warm-up", diagnose);
    Tracker timedT(timed.size());
    setPhase(&timedT, timed);
    WsSample r = drive(hub, timed, timedT, window, scenario + ": timed run", diagnose);
    setPhase(nullptr, {});

    RunChecks c;
    c.resends = hub.resends();
    c.repeatedAcks = timedT.repeated;
    auto first = timedT.sent.front();
    auto last = *std::max_element(timedT.acked.begin(), timedT.acked.end());
    std::unordered_set<std::string> ids;
    for (const auto& m : timed) ids.insert(m.msgId);
    for (const auto& f : hub.received()) {
      if (f.at < first || f.at > last) continue;
      const json& h = f.envelope.value("header", json::object());
      if (ids.count(h.value("parent_msg_id", ""))) continue;
      const json& route = f.envelope.value("route", json::object());
      ++c.otherFrames;
      c.otherKinds.push_back(route.value("operation", "") + " " + route.value("resource", ""));
    }
    checks[scenario].push_back(std::move(c));

    hub.setAckListener({});
    echo.reset();
    agent.reset();
    return r;
  }

  // Sends every message through the double, keeping at most `window` not yet acked; messages/s
  // from the first send to the last ack, and each message's send-to-ack latency.
  static WsSample drive(test::CloudHubDouble& hub, std::vector<Insert>& msgs, Tracker& t,
                        size_t window, const std::string& what,
                        const std::function<std::string()>& diagnose) {
    auto deadline = SteadyClock::now() + 120s;  // in all, and no more than 10 s without an ack
    auto waitUntil = [&](std::unique_lock<std::mutex>& l, const std::function<bool()>& cond) {
      while (!cond()) {
        size_t before = t.done;
        auto stall = std::min(deadline, SteadyClock::now() + 10s);
        if (!t.cv.wait_until(l, stall, [&] { return cond() || t.done != before; })) {
          size_t done = t.done;
          l.unlock();
          fail(what + ": timed out with " + std::to_string(done) + " of " +
               std::to_string(msgs.size()) + " acked" + diagnose());
        }
      }
    };
    for (size_t i = 0; i < msgs.size(); ++i) {
      {
        std::unique_lock l(t.mu);
        waitUntil(l, [&] { return t.inflight < window; });
        ++t.inflight;
        t.sent[i] = SteadyClock::now();
      }
      hub.send(std::move(msgs[i].envelope));
    }
    {
      std::unique_lock l(t.mu);
      waitUntil(l, [&] { return t.done == msgs.size(); });
    }
    WsSample r;
    auto last = *std::max_element(t.acked.begin(), t.acked.end());
    r.perSecond = static_cast<double>(msgs.size()) /
                  std::chrono::duration<double>(last - t.sent.front()).count();
    for (size_t i = 0; i < msgs.size(); ++i) {
      double ms = std::chrono::duration<double, std::milli>(t.acked[i] - t.sent[i]).count();
      r.latencyMs.push_back(std::round(ms * 1000) / 1000);
    }
    return r;
  }
};

WebsocketColumn::WebsocketColumn(WsColumnOptions options)
    : state_(std::make_unique<State>(std::move(options))) {
  if (!state_->options.podObject) fail("no podObject");
}
WebsocketColumn::~WebsocketColumn() = default;

std::vector<WsScenario> WebsocketColumn::scenarios() {
  State* s = state_.get();
  auto make = [s](const std::string& name, bool ours, size_t n, size_t window) {
    return WsScenario{name,
                      [s, name, ours, n, window](int) { return s->run(name, ours, n, window); }};
  };
  const auto& o = s->options;
  return {make("throughput.ws_echo", false, o.messages, o.window),
          make("throughput.ws_ours", true, o.messages, o.window),
          make("latency.ws_echo", false, o.latencyMessages, 1),
          make("latency.ws_ours", true, o.latencyMessages, 1)};
}

namespace {

// ours / echo for throughput (higher is better), echo / ours for latency: of the medians, and per
// repetition (same repetition, side by side) for min and max.
// With two limits (the echo and SQLite alone), the slower one in each repetition and of the
// medians.
json ratio(const WebsocketColumn::Series& metric, const std::string& ours,
           const std::vector<std::string>& limits, bool higherBetter) {
  const auto& o = metric.at(ours);
  auto slower = [&](double a, double b) { return higherBetter ? std::min(a, b) : std::max(a, b); };
  std::vector<double> per;
  for (size_t i = 0; i < o.size(); ++i) {
    double limit = metric.at(limits[0]).at(i);
    for (const auto& l : limits) limit = slower(limit, metric.at(l).at(i));
    per.push_back(higherBetter ? o[i] / limit : limit / o[i]);
  }
  double limit = median(metric.at(limits[0]));
  for (const auto& l : limits) limit = slower(limit, median(metric.at(l)));
  double r = higherBetter ? median(o) / limit : limit / median(o);
  return json{{"ours", ours},
              {"limit", limits.size() == 1 ? json(limits[0]) : json(limits)},
              {"ratio_of_medians", r},
              {"per_rep", summary(per)}};
}

}  // namespace

json WebsocketColumn::summary(const Series& rate, const Series& p50, const Series& p99) const {
  json out;
  out["ratios"] = {
      {"throughput_vs_echo", ratio(rate, "throughput.ws_ours", {"throughput.ws_echo"}, true)},
      {"latency_p50_vs_echo", ratio(p50, "latency.ws_ours", {"latency.ws_echo"}, false)},
      {"latency_p99_vs_echo", ratio(p99, "latency.ws_ours", {"latency.ws_echo"}, false)},
      {"throughput_p50_vs_echo", ratio(p50, "throughput.ws_ours", {"throughput.ws_echo"}, false)}};
  // In the full run SQLite alone (the MQTT column's, same rows and durability) is the other limit.
  const bool withSqlite = rate.count("throughput.sqlite") && p50.count("latency.sqlite");
  std::string key = "throughput_vs_echo";
  if (withSqlite) {
    key = "throughput_vs_slower_limit";
    out["ratios"][key] =
        ratio(rate, "throughput.ws_ours", {"throughput.ws_echo", "throughput.sqlite"}, true);
    out["ratios"]["throughput_vs_sqlite"] =
        ratio(rate, "throughput.ws_ours", {"throughput.sqlite"}, true);
    out["ratios"]["latency_p50_vs_slower_limit"] =
        ratio(p50, "latency.ws_ours", {"latency.ws_echo", "latency.sqlite"}, false);
  }
  double target = out["ratios"][key]["ratio_of_medians"];
  out["target"] = {
      {"what", withSqlite ? "throughput.ws_ours / min(throughput.ws_echo, throughput.sqlite) >= 0.5"
                          : "throughput.ws_ours / throughput.ws_echo >= 0.5 (--ws-only: no SQLite "
                            "alone in this run)"},
      {"value", target},
      {"met", target >= 0.5}};
  json checks;
  for (const auto& [name, runs] : state_->checks) {
    json per = json::array();
    for (const auto& c : runs) {
      per.push_back({{"double_resends", c.resends},
                     {"repeated_acks", c.repeatedAcks},
                     {"other_frames_in_timed_run", c.otherFrames},
                     {"other_frames", c.otherKinds}});
    }
    checks[name] = per;
  }
  out["checks"] = checks;
  const auto& o = state_->options;
  out["params"] = {
      {"throughput_messages", o.messages},
      {"window", o.window},
      {"latency_messages", o.latencyMessages},
      {"warmup_messages", o.warmup},
      {"transport", "TLS 1.2+ WebSocket, client certificate (CN system:node:bench-ws), 127.0.0.1"},
      {"cloud",
       "tests/support/cloudhub_double (Boost.Beast), a fresh one per run, resend "
       "interval 5 s"},
      {"ours",
       "in-process: SqliteStore (commit window 0, WAL, synchronous=FULL) + "
       "makeWebsocketLink (agent defaults; heartbeat, lease and node query intervals "
       "10 min so no periodic frame lands in a timed run)"},
      {"echo",
       "Boost.Beast WebSocket client over the same TLS: acks each frame at once, stores "
       "nothing"}};
  return out;
}

void WebsocketColumn::print(const Series& rate, const Series& p50, const Series& p99) const {
  auto row = [&](const std::string& what, const std::string& name) {
    const auto& r = rate.at(name);
    std::printf("| %-40s | %9.0f (%.0f-%.0f) | %7.2f | %7.2f |\n", what.c_str(), median(r),
                *std::min_element(r.begin(), r.end()), *std::max_element(r.begin(), r.end()),
                median(p50.at(name)), median(p99.at(name)));
  };
  std::string w = " (window " + std::to_string(state_->options.window) + ")";
  std::printf(
      "\n| ingest over WebSocket (mutual TLS), 2 KB pod inserts | msg/s median (min-max) | p50 ms "
      "| p99 ms |\n|---|---|---|---|\n");
  row("ours: stored + acked" + w, "throughput.ws_ours");
  row("double's echo: insert -> ack" + w, "throughput.ws_echo");
  row("ours, one at a time", "latency.ws_ours");
  row("double's echo, one at a time", "latency.ws_echo");
  json s = summary(rate, p50, p99);
  auto pr = [&](const char* what, const char* key) {
    const json& r = s["ratios"][key];
    std::printf("| %s | %.2f | %.2f-%.2f |\n", what, r["ratio_of_medians"].get<double>(),
                r["per_rep"]["min"].get<double>(), r["per_rep"]["max"].get<double>());
  };
  std::printf("\n| WebSocket ratio | median | per-rep min-max |\n|---|---|---|\n");
  if (s["ratios"].contains("throughput_vs_slower_limit")) {
    pr("throughput ours / slower limit (echo, SQLite alone; target >= 0.5)",
       "throughput_vs_slower_limit");
    pr("throughput ours / SQLite alone", "throughput_vs_sqlite");
  }
  pr("throughput ours / echo", "throughput_vs_echo");
  pr("latency p50 echo / ours (one at a time)", "latency_p50_vs_echo");
  pr("latency p99 echo / ours (one at a time)", "latency_p99_vs_echo");
  size_t resends = 0, repeated = 0, other = 0;
  for (const auto& [name, runs] : state_->checks) {
    for (const auto& c : runs) {
      resends += static_cast<size_t>(c.resends);
      repeated += c.repeatedAcks;
      other += c.otherFrames;
    }
  }
  double target = s["target"]["value"];
  std::printf(
      "websocket target: %.2f %s; in all runs: %zu resends by the double, %zu repeated acks, %zu "
      "frames other than the timed acks during timed runs\n",
      target, target >= 0.5 ? "MET" : "NOT MET", resends, repeated, other);
}

int websocketOnly(const WsColumnOptions& options, int reps, const std::string& out) {
  WebsocketColumn column(options);
  auto scenarios = column.scenarios();
  WebsocketColumn::Series rate, p50, p99;
  std::map<std::string, std::vector<std::vector<double>>> latencies;
  for (int rep = 0; rep < reps; ++rep) {
    for (auto& s : scenarios) {
      WsSample r = s.run(rep);
      rate[s.name].push_back(r.perSecond);
      p50[s.name].push_back(percentile(r.latencyMs, 50));
      p99[s.name].push_back(percentile(r.latencyMs, 99));
      std::printf("rep %d %-18s %9.1f msg/s  p50 %7.3f ms  p99 %7.3f ms\n", rep + 1, s.name.c_str(),
                  rate[s.name].back(), p50[s.name].back(), p99[s.name].back());
      std::fflush(stdout);
      latencies[s.name].push_back(std::move(r.latencyMs));
    }
  }
  column.print(rate, p50, p99);
  if (!out.empty()) {
    json j;
    j["benchmark"] = "link (websocket column only)";
    for (auto& s : scenarios) {
      j["scenarios"][s.name] = {{"messages_per_s", summary(rate[s.name])},
                                {"p50_ms", summary(p50[s.name])},
                                {"p99_ms", summary(p99[s.name])},
                                {"latency_samples_ms", latencies[s.name]}};
    }
    j["websocket"] = column.summary(rate, p50, p99);
    std::ofstream f(out);
    f << j.dump(2) << "\n";
    if (!f) fail("cannot write " + out);
    std::cout << "wrote " << out << "\n";
  }
  return 0;
}

}  // namespace outpost::bench
