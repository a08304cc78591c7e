#pragma once
// The harness of the KubeEdge WebSocket link tests (websocket_link_test.cc, edgecore_test.cc): the
// node's store and link as the agent wires them, the double's options, and helpers over what the
// double received.

#include <doctest/doctest.h>

#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>

#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/websocket_link.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/cloudhub_double.h"
#include "support/mosquitto.h"
#include "support/test_util.h"

namespace outpost::test::ws {

using namespace std::chrono_literals;
using nlohmann::json;

inline constexpr const char* kNode = "edge-1";
inline const std::string kCn = std::string("system:node:") + kNode;

// The node's store and link, as the agent wires them.
struct Agent {
  // `beforeLink` runs on the opened store before the link starts (state a restart would find).
  Agent(const std::filesystem::path& dir, cloudhub::WebsocketLinkOptions o,
        const std::function<void(Agent&)>& beforeLink = {})
      : logPath((dir / "agent.log").string()),
        logging({core::LogLevel::kDebug, false, logPath}),
        options(std::move(o)) {
    metadb::StoreOptions so;
    so.path = (dir / "outpost.db").string();
    auto s = metadb::openSqliteStore(so, clock, bus, logging, metrics);
    REQUIRE(s.isOk());
    store = std::move(s).value();
    if (beforeLink) beforeLink(*this);
    link = cloudhub::makeWebsocketLink(options, *store, bus, clock, logging, metrics);
    REQUIRE(link->start().isOk());
    auto r = store->openReader();
    REQUIRE(r.isOk());
    reader = std::move(r).value();
  }
  ~Agent() {
    link->stop();
    link.reset();
    reader.reset();
    store.reset();
  }
  std::optional<metadb::Resource> get(const std::string& key) {
    auto r = reader->get(key);
    REQUIRE(r.isOk());
    return *r;
  }
  bool connected() { return link->status().state == cloudhub::LinkState::kConnected; }
  std::string log() {
    logging.flush();
    return readFile(logPath);
  }
  void enqueue(const std::string& kind, const std::string& key, const std::string& payload) {
    metadb::WriteBatch b;
    b.enqueue({kind, key, payload, 0});
    write(std::move(b));
    link->outboxChanged();
  }
  void write(metadb::WriteBatch b) {
    std::promise<bool> done;
    core::EventLoop loop("test", clock);
    loop.start();
    store->write(std::move(b), loop,
                 [&](core::Result<metadb::WriteResult> r) { done.set_value(r.isOk()); });
    REQUIRE(done.get_future().get());
    loop.stop();
  }
  std::optional<std::string> kv(std::string_view key) {
    auto r = reader->getKv(key);
    REQUIRE(r.isOk());
    return *r;
  }
  // The link's answer to a query, waited for with a deadline (nullopt when none came).
  std::optional<cloudhub::QueryResult> ask(const std::string& resource, core::Duration timeout,
                                           std::chrono::milliseconds deadline = 10s) {
    auto p = std::make_shared<std::promise<cloudhub::QueryResult>>();
    auto f = p->get_future();
    link->query(resource, timeout, [p](cloudhub::QueryResult r) { p->set_value(std::move(r)); });
    if (f.wait_for(deadline) != std::future_status::ready) return std::nullopt;
    return f.get();
  }
  int64_t outboxRows() {
    auto s = reader->outboxStats();
    REQUIRE(s.isOk());
    return s->rows;
  }

  core::SystemClock clock;
  std::string logPath;
  core::Bus bus;
  core::Logging logging;
  core::MetricsRegistry metrics;
  cloudhub::WebsocketLinkOptions options;
  std::unique_ptr<metadb::SqliteStore> store;
  cloudhub::CloudLinkPtr link;
  metadb::StoreReaderPtr reader;
};

inline cloudhub::WebsocketLinkOptions linkOptions(const std::string& server, const TlsFiles& tls) {
  cloudhub::WebsocketLinkOptions o;
  o.nodeName = kNode;
  o.server = server;
  o.caFile = tls.ca;
  o.certFile = tls.clientCert;
  o.keyFile = tls.clientKey;
  o.heartbeat = 1s;
  o.leaseInterval = 300ms;
  o.nodeQueryInterval = 300ms;
  o.requestTimeout = 2s;
  o.reconnectBase = 50ms;
  o.reconnectCap = 300ms;
  return o;
}

inline CloudHubDoubleOptions hubOptions(const TlsFiles& tls) {
  CloudHubDoubleOptions h = hubOptionsFor(tls);
  h.requireCn = kCn;
  return h;
}

inline json pod(const std::string& name, int64_t version, const std::string& image = "busybox",
                const std::string& uid = "") {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata",
           {{"name", name},
            {"namespace", "default"},
            {"uid", uid.empty() ? "uid-" + name : uid},
            {"resourceVersion", std::to_string(version)}}},
          {"spec", {{"containers", json::array({{{"name", "main"}, {"image", image}}})}}}};
}

inline std::string route(const ReceivedFrame& f, const char* field) {
  return f.envelope.value("route", json::object()).value(field, "");
}

// The (operation, resource) pairs the edge sent, in order, leaving out `skip` operations.
inline std::vector<std::string> sequence(const std::vector<ReceivedFrame>& frames) {
  std::vector<std::string> out;
  for (const auto& f : frames) out.push_back(route(f, "operation") + " " + route(f, "resource"));
  return out;
}

inline size_t countOf(const std::vector<ReceivedFrame>& frames, const std::string& op,
                      const std::string& resource) {
  size_t n = 0;
  for (const auto& f : frames)
    if (route(f, "operation") == op && route(f, "resource") == resource) ++n;
  return n;
}

inline json configMap(const std::string& name, int64_t version, const std::string& mode) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata",
           {{"name", name},
            {"namespace", "default"},
            {"uid", "uid-" + name},
            {"resourceVersion", std::to_string(version)}}},
          {"data", {{"mode", mode}}}};
}

inline metadb::WriteBatch upsert(const std::string& key, const json& object) {
  metadb::WriteBatch b;
  b.apply({metadb::ResourceChange::Kind::kUpsert, key,
           object["metadata"]["resourceVersion"].get<std::string>(),
           object["metadata"]["uid"].get<std::string>(), object.dump(), "cloud"});
  return b;
}

struct Setup {
  TempDir dir;
  TlsFiles tls = makeTlsFiles(dir.path(), kCn, "system:nodes");
};

}  // namespace outpost::test::ws
