// The KubeEdge CloudHub link over WebSocket: talks to CloudCore as EdgeCore does (PROTOCOL.md §1),
// stores each cloud message before acknowledging it, sends pod and node status from the outbox as
// patches, keeps the node lease renewed, and finds a silent cloud by a read deadline.

#include "outpost/cloudhub/websocket_link.h"

#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "outpost/core/backoff.h"
#include "outpost/core/event_loop.h"
#include "rate_limiter.h"
#include "session_common.h"
#include "tls_probe.h"
#include "ws_transport.h"

namespace outpost::cloudhub {

using nlohmann::json;

namespace {

constexpr const char* kOrigin = "cloud";
constexpr const char* kKvNode = "cloud.websocket.node";    // the cloud's last answer for our node
constexpr const char* kKvLease = "cloud.websocket.lease";  // and for our lease

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

// Kubernetes' MicroTime: RFC 3339 with microseconds, UTC.
std::string microTime(core::WallTime t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(us % 1000000));
  return std::string(buf) + frac;
}

std::string goArch() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m.rfind("armv", 0) == 0) return "arm";
  return m;
}

// The cloud's answer to a request (PROTOCOL.md §1): {"Object", "Err"}, the plain object, or
// {"ErrStatus"} when it is not there.
struct Answer {
  std::optional<json> object;
  std::optional<json> error;
  bool notFound = false;
};

Answer parseAnswer(const Envelope& env) {
  Answer a;
  if (env.route.operation == "error") a.error = json::parse(env.content, nullptr, false);
  auto text = contentObject(env);
  if (!text) return a;
  json c = json::parse(*text, nullptr, false);
  if (c.contains("ErrStatus")) {
    a.error = c["ErrStatus"];
    const json& st = c["ErrStatus"];
    a.notFound = (st.is_object() && st.value("reason", "") == "NotFound") ||
                 (st.is_object() && st.contains("code") && st["code"] == 404);
    return a;
  }
  if (c.contains("Object") || c.contains("Err")) {
    if (c.contains("Object") && c["Object"].is_object()) a.object = c["Object"];
    if (c.contains("Err") && !c["Err"].is_null()) a.error = c["Err"];
    return a;
  }
  a.object = std::move(c);
  return a;
}

}  // namespace

std::string_view querySourceName(QuerySource s) {
  return s == QuerySource::kCloud ? "cloud" : "store";
}

class WebsocketLink final : public CloudLink {
  // Called with the cloud's answer, or nullptr and why there is none.
  using Answered = std::function<void(const Envelope*, const std::string& why)>;

 public:
  WebsocketLink(WebsocketLinkOptions o, metadb::Store& store, core::Bus& bus, core::Clock& clock,
                core::Logging& logging, core::MetricsRegistry& metrics)
      : opts_(std::move(o)),
        bus_(bus),
        clock_(clock),
        log_(logging.get("cloudhub")),
        store_(store),
        loop_("cloudhub-ws", clock),
        backoff_(opts_.reconnectBase, opts_.reconnectCap),
        limiter_(clock, opts_.rateQps, opts_.rateBurst),
        writes_(store),
        drainer_(loop_, writes_, limiter_, log_,
                 [this](const metadb::OutboxEntry& e, std::function<void(core::Status)> done) {
                   sendRow(e, std::move(done));
                 }),
        linkUp_(metrics.gauge("outpost_cloud_link_up", "1 when the cloud link is connected.",
                              {{"transport", "websocket"}})),
        book_(clock, bus, linkUp_, loop_, writes_, log_, opts_.server),
        reconnects_(metrics.counter("outpost_cloud_reconnects_total",
                                    "Connection attempts after the first.",
                                    {{"transport", "websocket"}})),
        received_(metrics.counter("outpost_cloud_messages_received_total",
                                  "Messages received from the cloud.",
                                  {{"transport", "websocket"}})),
        sent_(metrics.counter("outpost_cloud_messages_sent_total",
                              "Messages the cloud accepted from this node.",
                              {{"transport", "websocket"}})),
        deadlines_(metrics.counter("outpost_cloud_read_deadline_expired_total",
                                   "Connections declared dead: no frame or pong for 2 x heartbeat.",
                                   {{"transport", "websocket"}})),
        timeouts_(metrics.counter("outpost_cloud_requests_timed_out_total",
                                  "Requests to the cloud that got no answer in time.",
                                  {{"transport", "websocket"}})),
        invalidTooLarge_(metrics.counter("outpost_cloud_messages_invalid_total",
                                         "Messages refused, by reason.",
                                         {{"reason", "too_large"}})),
        invalidMalformed_(metrics.counter("outpost_cloud_messages_invalid_total",
                                          "Messages refused, by reason.",
                                          {{"reason", "malformed"}})),
        invalidContent_(metrics.counter("outpost_cloud_messages_invalid_total",
                                        "Messages refused, by reason.", {{"reason", "invalid"}})),
        invalidAddress_(metrics.counter("outpost_cloud_messages_invalid_total",
                                        "Messages refused, by reason.",
                                        {{"reason", "misaddressed"}})) {
    drainer_.setRedrain([this] { drain(); });
    metrics.gaugeCallback("outpost_cloud_offline_seconds",
                          "Length of the current outage of the cloud link (0 when connected).",
                          [this] { return status().offlineSeconds; }, {{"transport", "websocket"}});
    metrics.gaugeCallback(
        "outpost_cloud_offline_seconds_total", "Time the cloud link was down since start.",
        [this] { return status().offlineSecondsTotal; }, {{"transport", "websocket"}});
  }

  ~WebsocketLink() override { stop(); }

  // ---- CloudLink
  core::Status start() override {
    {
      std::lock_guard lock(twinAcks_->mu);
      twinAcks_->link = this;
    }
    loop_.start();
    core::Status opened;
    if (!loop_.runSync([&] {
          auto r = store_.openReader();
          if (!r.isOk()) {
            opened = r.status();
            return;
          }
          reader_ = std::move(r).value();
          book_.restore(*reader_);
          readMark();
        })) {
      return core::internalError("cloudhub loop did not start");
    }
    OUTPOST_RETURN_IF_ERROR(opened.withContext("opening a store reader"));
    pollTimer_ = loop_.runEvery(opts_.outboxPoll, [this] { drain(); });
    loop_.post([this] { connectNow(); });
    return core::okStatus();
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    {
      std::lock_guard lock(twinAcks_->mu);
      twinAcks_->link = nullptr;
    }
    std::vector<std::shared_future<void>> closing;
    loop_.runSync([&] {
      stopping_ = true;
      loop_.cancel(reconnectTimer_);
      loop_.cancel(pollTimer_);
      dropConnection();
      closing = std::move(closing_);
    });
    // No event reaches this link any more; wait for the connections' threads to go.
    for (auto& f : closing) {
      if (f.wait_for(std::chrono::seconds(15)) != std::future_status::ready)
        log_.error("a WebSocket connection did not close within 15 s");
    }
    if (!writes_.waitIdle(std::chrono::seconds(10)))
      log_.error("store writes still pending at stop");
    loop_.runSync([this] { reader_.reset(); });
    loop_.stop();
  }

  LinkStatus status() const override { return book_.status(); }

  void outboxChanged() override {
    loop_.post([this] { drain(); });
  }

  bool alive(std::chrono::milliseconds timeout) override {
    return loop_.runSync([] {}, timeout);
  }

  void credentialsChanged() override {
    loop_.post([this] {
      if (stopping_) return;
      log_.info("credentials changed: reconnecting to ", opts_.server, " with the new files");
      bool wasConnected = state() == LinkState::kConnected;
      dropConnection();
      loop_.cancel(reconnectTimer_);
      backoff_.reset();
      if (wasConnected) setState(LinkState::kDisconnected, "credentials changed");
      connectNow();
    });
  }

  void query(const std::string& resource, core::Duration timeout, QueryCallback done) override {
    loop_.post([this, resource, timeout, done = std::move(done)]() mutable {
      if (!stopping_) startQuery(resource, timeout, std::move(done));
    });
  }

 private:
  // ---- state and outage bookkeeping (session_common.h, shared with the MQTT link)
  LinkState state() const { return book_.state(); }
  void setState(LinkState st, const std::string& detail) { book_.set(st, detail); }

  // ---- connection
  std::string url() const {
    std::string base = opts_.server;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base + "/" + opts_.projectId + "/" + opts_.nodeName + "/events";
  }

  core::Result<WsTlsMaterial> readTls() const {
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

  void connectNow() {
    reconnectTimer_ = 0;
    if (stopping_) return;
    setState(LinkState::kConnecting, opts_.server);
    auto tls = readTls();
    if (!tls.isOk()) {
      log_.error("cannot connect to ", opts_.server, ": ", tls.status().message());
      return scheduleReconnect(tls.status().message());
    }
    uint64_t id = ++connId_;
    WsConnectOptions c;
    c.url = url();
    c.headers = {
        {"node_id", opts_.nodeName}, {"project_id", opts_.projectId}, {"ConnectionUse", "msg"}};
    c.tls = std::move(tls).value();
    c.connectTimeout = std::chrono::duration_cast<std::chrono::milliseconds>(opts_.connectTimeout);
    // Frames up to 4 x the message limit arrive and are counted as too large by the codec, the
    // connection staying up; larger ones close it.
    c.maxFrameBytes = 4 * opts_.maxMessageBytes;
    WsEvents ev;
    ev.opened = [this, id] { loop_.post([this, id] { onOpened(id); }); };
    ev.failed = [this, id](std::string why) {
      loop_.post([this, id, why] { onConnectFailed(id, why); });
    };
    ev.text = [this, id](std::string text) {
      loop_.post([this, id, text = std::move(text)] { onFrame(id, text); });
    };
    ev.pong = [this, id] {
      loop_.post([this, id] {
        if (id == connId_) lastRx_ = clock_.now();
      });
    };
    ev.closed = [this, id](std::string why) { loop_.post([this, id, why] { onClosed(id, why); }); };
    log_.debug("connecting to ", c.url, " as ", opts_.nodeName);
    auto conn = WsConnection::open(std::move(c), std::move(ev));
    if (!conn.isOk()) return onConnectFailed(id, conn.status().message());
    conn_ = std::move(conn).value();
    connectTimer_ = loop_.runAfter(opts_.connectTimeout, [this, id] {
      connectTimer_ = 0;
      onConnectFailed(id, "no WebSocket connection within " +
                              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 opts_.connectTimeout)
                                                 .count()) +
                              " ms");
    });
  }

  void onConnectFailed(uint64_t id, const std::string& why) {
    if (stopping_ || id != connId_ || state() != LinkState::kConnecting) return;
    dropConnection();
    if (!explained_) {
      // Find out why, once per outage, in words an operator can act on: with TLS 1.3 a refused
      // client certificate only shows as a broken upgrade, and the probe says so plainly.
      explained_ = true;
      core::Status probe = probeTls({opts_.server, opts_.caFile, opts_.certFile, opts_.keyFile},
                                    std::chrono::seconds(5));
      if (!probe.isOk()) {
        log_.error("TLS with ", opts_.server, " failed: ", probe.message());
      } else if (why.find("refused the WebSocket upgrade") != std::string::npos) {
        log_.error("CloudHub at ", opts_.server, ": ", why, ". It accepts node ", opts_.nodeName,
                   " only with a client certificate for CN system:node:", opts_.nodeName,
                   " and project ", opts_.projectId);
      }
    }
    scheduleReconnect(why);
  }

  void onOpened(uint64_t id) {
    if (stopping_ || id != connId_ || state() != LinkState::kConnecting) return;
    loop_.cancel(connectTimer_);
    connectTimer_ = 0;
    backoff_.reset();
    explained_ = false;
    lastRx_ = clock_.now();
    setState(LinkState::kConnected, opts_.server);
    log_.info("connected to ", url());
    auto every = [this](core::Duration d, std::function<void()> f) {
      timers_.push_back(loop_.runEvery(d, std::move(f)));
    };
    every(opts_.heartbeat, [this] {
      sendKeepalive();
      if (conn_) conn_->ping();
    });
    every(std::max<core::Duration>(opts_.heartbeat / 4, std::chrono::milliseconds(50)), [this] {
      checkDeadline();
      if (conn_) checkResync();
    });
    every(opts_.leaseInterval, [this] { renewLease(); });
    every(opts_.nodeQueryInterval, [this] { queryNode(); });
    every(opts_.nodePatchInterval, [this] {
      if (clock_.now() - lastNodePatch_ >= opts_.nodePatchInterval / 2) sendNodePatch("{}", {});
    });
    // What EdgeCore sends on every connect, in its order (PROTOCOL.md §1).
    sendKeepalive();
    sendMembershipRequest();
    if (!registered_ && !registering_) registerNode();
    lease_.reset();
    queryLease();
    queryNode();
    if (!nodePatchSent_) sendNodePatch("{}", {});
    lastDesiredRx_ = clock_.now();
    nodeAnswered_ = settled_ = false;
    readMark();
    if (markSet_ && !unresolved_.empty()) askUnresolved();
    drain();
  }

  void onClosed(uint64_t id, const std::string& why) {
    if (id != connId_) return;
    connectionLost(why);
  }

  void checkDeadline() {
    auto silent = clock_.now() - lastRx_;
    if (silent <= 2 * opts_.heartbeat) return;
    deadlines_.inc();
    connectionLost(
        "no frame or pong from the cloud for " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(silent).count()) +
        " ms (read deadline: 2 x heartbeat)");
  }

  void connectionLost(const std::string& why) {
    if (stopping_ || state() != LinkState::kConnected) return;
    dropConnection();
    scheduleReconnect(why);
  }

  // Forgets the current connection (it closes in the background) and everything tied to it.
  void dropConnection() {
    for (auto t : timers_) loop_.cancel(t);
    timers_.clear();
    loop_.cancel(connectTimer_);
    connectTimer_ = 0;
    ++connId_;  // events of the old connection are ignored from here on
    if (conn_) {
      closing_.push_back(conn_->close());
      conn_.reset();
    }
    std::erase_if(closing_, [](const std::shared_future<void>& f) {
      return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    });
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending) {
      loop_.cancel(p.timer);
      p.done(nullptr, "transport error: the connection went away");
    }
    drainer_.reset();
    leaseBusy_ = false;
    registering_ = false;
  }

  void scheduleReconnect(const std::string& why) {
    if (stopping_) return;
    bool wasConnected = state() == LinkState::kConnected;
    setState(LinkState::kDisconnected, why);
    auto delay = backoff_.next();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(delay).count();
    if (wasConnected) {
      log_.warn("cloud link down: ", why, "; reconnecting in ", ms, " ms");
    } else {
      log_.warn("connecting to ", opts_.server, " failed: ", why, "; retrying in ", ms, " ms");
    }
    reconnects_.inc();
    book_.update([](LinkStatus& s) { s.reconnects++; });
    loop_.cancel(reconnectTimer_);
    reconnectTimer_ = loop_.runAfter(delay, [this] { connectNow(); });
  }

  // ---- sending
  Envelope message(const char* source, const char* group, const char* operation,
                   const std::string& resource) const {
    Envelope e;
    e.header.msgId = newMessageId();
    e.header.timestamp = core::toUnixMillis(clock_.wallNow());
    e.route.source = source;
    e.route.group = group;
    e.route.operation = operation;
    e.route.resource = resource;
    return e;
  }

  void countSent() {
    sent_.inc();
    book_.update([](LinkStatus& s) { s.messagesOut++; });
  }

  // Writes one frame; `done` runs on the loop with the outcome (not at all after stop).
  void send(const Envelope& env, std::function<void(core::Status)> done) {
    if (!conn_ || state() != LinkState::kConnected) {
      if (done) done(core::unavailable("not connected"));
      return;
    }
    conn_->sendText(encode(env, Encoding::kJson), [this, done](core::Status s) {
      loop_.post([this, s, done] {
        if (s.isOk()) countSent();
        if (done && !stopping_) done(s);
      });
    });
  }

  // Sends a request and calls `answered` with the cloud's answer (matched by parent_msg_id), or
  // with nullptr when none came within the request timeout or the connection went away.
  void request(const Envelope& env, std::function<void(const Envelope*)> answered) {
    request(
        env, opts_.requestTimeout,
        [answered = std::move(answered)](const Envelope* a, const std::string&) { answered(a); });
  }
  // The same with its own timeout; without an answer, `why` says what happened instead.
  void request(const Envelope& env, core::Duration timeout, Answered answered) {
    std::string id = env.header.msgId;
    std::string what = env.route.operation + " " + env.route.resource;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    Pending p;
    p.done = std::move(answered);
    p.timer = loop_.runAfter(timeout, [this, id, what, ms] {
      auto it = pending_.find(id);
      if (it == pending_.end()) return;
      auto done = std::move(it->second.done);
      pending_.erase(it);
      timeouts_.inc();
      log_.warn("no answer from the cloud to ", what, " within ", ms, " ms");
      done(nullptr, "timeout: no answer within " + std::to_string(ms) + " ms");
    });
    pending_[id] = std::move(p);
    send(env, [this, id](core::Status s) {
      if (s.isOk()) return;
      auto it = pending_.find(id);  // not sent: no answer will come
      if (it == pending_.end()) return;
      auto done = std::move(it->second.done);
      loop_.cancel(it->second.timer);
      pending_.erase(it);
      done(nullptr, "transport error: " + s.message());
    });
  }

  // An ack (PROTOCOL.md §1): operation `response`, parent_msg_id = the cloud's msg_id, the same
  // resource, content "OK".
  void ack(const Envelope& received, const std::string& source, const std::string& group) {
    Envelope a = message("", "", "response", received.route.resource);
    a.route.source = source;
    a.route.group = group;
    a.header.parentMsgId = received.header.msgId;
    setContentString(a, "OK");
    send(a, [this, resource = received.route.resource](core::Status s) {
      if (!s.isOk()) log_.warn("acknowledging ", resource, " failed: ", s.message());
    });
  }
  void ack(const Envelope& received) { ack(received, received.route.source, received.route.group); }

  // What EdgeCore's meta manager answers to a cloud message it could not store: operation `error`,
  // parent_msg_id the cloud's msg_id, the reason as content. Not an ack: nothing was stored.
  void answerError(const Envelope& received, const std::string& why) {
    Envelope a = message("", "", "error", received.route.resource);
    a.route.source = "metaManager";
    a.route.group = received.route.group;
    a.header.parentMsgId = received.header.msgId;
    setContentString(a, why);
    send(a, [this, resource = received.route.resource](core::Status s) {
      if (!s.isOk()) log_.warn("answering ", resource, " with an error failed: ", s.message());
    });
  }

  // Keeps an answer of the cloud durably, then acknowledges it.
  void storeAndAck(const Envelope& answer, const char* kvKey, const std::optional<json>& object) {
    metadb::WriteBatch batch;
    if (object) batch.putKv(kvKey, object->dump());
    writes_.write(std::move(batch), loop_, [this, answer](core::Result<metadb::WriteResult> r) {
      if (!r.isOk()) {
        log_.error("storing the cloud's answer to ", answer.route.resource, ": ",
                   r.status().toString());
        return;
      }
      ack(answer);
    });
  }

  std::string nodeKey(const char* type) const {
    return opts_.nodeNamespace + "/" + type + "/" + opts_.nodeName;
  }
  std::string leaseKey() const { return "kube-node-lease/lease/" + opts_.nodeName; }

  void sendKeepalive() {
    Envelope e = message("websocket", "resource", "keepalive", "node");
    setContentString(e, "ping");
    send(e, {});
  }

  void sendMembershipRequest() {
    Envelope e = message("twin", "resource", "get", "membership/detail");
    json body = {{"event_type", "group_membership_event"},
                 {"event_id", newMessageId()},
                 {"group_id", opts_.nodeName},
                 {"operation", "detail"},
                 {"timestamp", core::toUnixMillis(clock_.wallNow())}};
    setContentString(e, body.dump());
    send(e, {});
  }

  json nodeObject() const {
    json labels = {{"kubernetes.io/arch", goArch()},
                   {"kubernetes.io/hostname", opts_.nodeName},
                   {"kubernetes.io/os", "linux"},
                   {"node-role.kubernetes.io/agent", ""},
                   {"node-role.kubernetes.io/edge", ""}};
    for (const auto& [k, v] : opts_.nodeLabels) labels[k] = v;
    json status = json::object();
    if (!lastNodeStatus_.empty()) status = json::parse(lastNodeStatus_, nullptr, false);
    if (!status.is_object()) status = json::object();
    if (!status.contains("nodeInfo")) {
      status["nodeInfo"] = {
          {"architecture", goArch()}, {"operatingSystem", "linux"}, {"kubeletVersion", "outpost"}};
    }
    return {{"metadata", {{"name", opts_.nodeName}, {"labels", labels}}},
            {"spec", json::object()},
            {"status", status}};
  }

  // Once per process: the cloud creates the Node if it does not exist.
  void registerNode() {
    registering_ = true;
    Envelope e = message("edged", "meta", "insert", nodeKey("node"));
    e.content = nodeObject().dump();
    request(e, [this](const Envelope* answer) {
      registering_ = false;
      if (!answer) return;  // tried again on the next connect
      Answer a = parseAnswer(*answer);
      registered_ = true;
      if (a.error) {
        log_.warn("the cloud answered the node registration with an error: ", a.error->dump());
      } else {
        log_.info("node ", opts_.nodeName, " registered");
      }
      storeAndAck(*answer, kKvNode, a.object);
    });
  }

  json leaseObject() const {
    return {{"apiVersion", "coordination.k8s.io/v1"},
            {"kind", "Lease"},
            {"metadata", {{"name", opts_.nodeName}, {"namespace", "kube-node-lease"}}},
            {"spec",
             {{"holderIdentity", opts_.nodeName},
              {"leaseDurationSeconds", opts_.leaseDurationSeconds},
              {"renewTime", microTime(clock_.wallNow())}}}};
  }

  void queryLease() {
    if (leaseBusy_) return;
    leaseBusy_ = true;
    Envelope e = message("edged", "meta", "query", leaseKey());
    request(e, [this](const Envelope* answer) {
      leaseBusy_ = false;
      if (!answer) return;
      Answer a = parseAnswer(*answer);
      storeAndAck(*answer, kKvLease, a.object);
      if (a.object && a.object->contains("metadata")) {
        lease_ = *a.object;
        renewLease();  // the lease may be stale: renew it at once
      } else if (a.notFound || !a.object) {
        leaseWrite("insert", leaseObject());
      }
    });
  }

  void leaseWrite(const char* operation, json lease) {
    leaseBusy_ = true;
    Envelope e = message("edged", "meta", operation, leaseKey());
    e.content = lease.dump();
    request(e, [this, operation](const Envelope* answer) {
      leaseBusy_ = false;
      if (!answer) return;
      Answer a = parseAnswer(*answer);
      storeAndAck(*answer, kKvLease, a.object);
      if (a.error || !a.object) {
        log_.warn("the cloud refused the lease ", operation, ": ",
                  a.error ? a.error->dump() : "no object in the answer");
        lease_.reset();  // query it again on the next round
        return;
      }
      lease_ = *a.object;
    });
  }

  void renewLease() {
    if (leaseBusy_) return;
    if (!lease_) return queryLease();
    json lease = *lease_;
    lease["spec"]["holderIdentity"] = opts_.nodeName;
    lease["spec"]["leaseDurationSeconds"] = opts_.leaseDurationSeconds;
    lease["spec"]["renewTime"] = microTime(clock_.wallNow());
    leaseWrite("update", std::move(lease));
  }

  void queryNode() {
    Envelope e = message("edged", "meta", "query", nodeKey("node"));
    request(e, [this](const Envelope* answer) {
      if (!answer) return;
      Answer a = parseAnswer(*answer);
      if (a.notFound) log_.warn("the cloud does not know node ", opts_.nodeName);
      onNodeAnswered();
      storeAndAck(*answer, kKvNode, a.object);
    });
  }

  // A strategic-merge patch of the node (its status), as JSON text inside a JSON string.
  void sendNodePatch(const std::string& patch, std::function<void(core::Status)> done) {
    nodePatchSent_ = true;
    lastNodePatch_ = clock_.now();
    Envelope e = message("edged", "meta", "patch", nodeKey("nodepatch"));
    setContentString(e, patch);
    request(e, [this, done](const Envelope* answer) {
      if (answer) {
        Answer a = parseAnswer(*answer);
        if (a.error) log_.warn("the cloud refused the node status patch: ", a.error->dump());
      }
      if (done) done(answer ? core::okStatus() : core::unavailable("no answer to the node patch"));
    });
  }

  // ---- queries (PROTOCOL.md §1: operation query, content null, answered by parent_msg_id)
  bool queryable(const std::string& resource) const {
    if (resource == nodeKey("node")) return true;
    auto parts = metadb::parseKey(resource);
    return parts.isOk() &&
           (parts->type == "configmap" || parts->type == "secret" || parts->type == "pod");
  }
  static bool isPodKey(const std::string& resource) {
    auto parts = metadb::parseKey(resource);
    return parts.isOk() && parts->type == "pod";
  }

  void startQuery(const std::string& resource, core::Duration timeout, QueryCallback done) {
    if (!reader_ || !queryable(resource)) {
      QueryResult r;
      r.status =
          reader_ ? core::invalidArgument("cannot query \"" + resource +
                                          "\": expected <namespace>/configmap/<name>, "
                                          "<namespace>/secret/<name>, <namespace>/pod/<name> or " +
                                          nodeKey("node"))
                  : core::failedPrecondition("the cloud link is not started");
      r.reason = r.status.message();
      return done(std::move(r));
    }
    // While the store is marked incomplete, a pod someone asks about (deploy keeps it running
    // unnamed) must be settled by the cloud before the mark may go.
    if (markSet_ && isPodKey(resource)) unresolved_.insert(resource);
    if (state() != LinkState::kConnected || !conn_) {
      std::string why = book_.status().lastError;
      return done(fromStore(resource, why.empty() ? "offline" : "offline: " + why));
    }
    Envelope e = message("edged", "meta", "query", resource);
    request(
        e, timeout,
        [this, resource, done = std::move(done)](const Envelope* answer, const std::string& why) {
          if (!answer) return done(fromStore(resource, why));
          onQueryAnswer(resource, *answer, done);
        });
  }

  // The cloud answered: a found object is stored as an insert from the cloud, then acked (as the
  // node query's answer); NotFound is acked and leaves the store alone (deletes come as deletes).
  void onQueryAnswer(const std::string& resource, const Envelope& answer, QueryCallback done) {
    Answer a = parseAnswer(answer);
    bool node = resource == nodeKey("node");
    if (node) onNodeAnswered();
    if (a.error && !a.notFound) {
      return done(fromStore(resource, "the cloud answered with an error: " + a.error->dump()));
    }
    metadb::WriteBatch batch;
    if (a.object && node) {
      batch.putKv(kKvNode, a.object->dump());
    } else if (a.object) {
      Envelope insert = answer;
      insert.route.operation = "insert";
      insert.route.resource = resource;
      auto change = resourceChangeFrom(insert, resource, kOrigin);
      if (!change.isOk()) {
        invalid(invalidContent_, "answer to query " + resource, change.status().message());
        return done(fromStore(
            resource, "the cloud's answer is not a valid object: " + change.status().message()));
      }
      batch.apply(std::move(change).value());
    }
    bool found = a.object.has_value();
    writes_.write(
        std::move(batch), loop_,
        [this, resource, answer, found, node, object = a.object,
         done](core::Result<metadb::WriteResult> r) {
          if (!r.isOk()) {
            log_.error("storing the cloud's answer to the query of ", resource, ": ",
                       r.status().toString());
            return done(
                fromStore(resource, "storing the cloud's answer failed: " + r.status().message()));
          }
          ack(answer);
          if (unresolved_.erase(resource)) {
            log_.info("the cloud settled ", resource, ": ", found ? "it is wanted" : "not found");
            maybeClearMark();
          }
          QueryResult q;
          if (node) {
            if (object) q.object = object->dump();
          } else if (found) {
            q = fromStore(resource, "");
            bool older = !r->changes.empty() && r->changes[0] == metadb::ApplyOutcome::kStale;
            q.reason = older ? "found; the store holds a newer version" : "found";
          }
          q.source = QuerySource::kCloud;
          if (q.reason.empty()) q.reason = found ? "found" : "not found";
          done(std::move(q));
        });
  }

  QueryResult fromStore(const std::string& resource, std::string reason) {
    QueryResult r;
    r.source = QuerySource::kStore;
    r.reason = std::move(reason);
    if (!reader_) return r;
    if (resource == nodeKey("node")) {
      auto kv = reader_->getKv(kKvNode);
      if (kv.isOk() && kv->has_value()) r.object = **kv;
      return r;
    }
    auto got = reader_->get(resource);
    if (!got.isOk()) {
      r.reason += "; reading the store: " + got.status().toString();
    } else if (*got) {
      r.object = (*got)->object;
      r.resourceVersion = (*got)->version;
    }
    return r;
  }

  // ---- resync after a connect: lastSync and the needs_full_resync mark
  // The cloud resends on connect what the node has not acknowledged and then goes quiet; the
  // session counts as in step once the node query was answered and no desired-state message came
  // for resyncQuietHeartbeats heartbeats. lastSync is that moment, then every later answer to the
  // node query on the same connection. The mark goes only then, and only when every pod that was
  // asked about while it was set (deploy keeps those running unnamed) was settled by the cloud
  // (found and stored, or NotFound): a pod the cloud still wants is never collected.
  void readMark() {
    auto mark = reader_->getKv(metadb::kKvNeedsFullResync);
    if (!mark.isOk()) {
      log_.error("reading ", metadb::kKvNeedsFullResync, ": ", mark.status().toString());
      return;  // keeps what it believed
    }
    markSet_ = mark->has_value() && **mark == "1";
  }

  void onNodeAnswered() {
    nodeAnswered_ = true;
    if (!settled_) return;
    book_.synced(clock_.wallNow());
  }

  void checkResync() {
    auto quiet = opts_.heartbeat * opts_.resyncQuietHeartbeats;
    auto now = clock_.now();
    if (settled_) {
      if (markSet_ && !unresolved_.empty() && now - lastAsked_ >= quiet) askUnresolved();
      return;
    }
    if (!nodeAnswered_ || now - lastDesiredRx_ < quiet) return;
    settled_ = true;
    book_.synced(clock_.wallNow());
    log_.info("in step with the cloud: no resend for ",
              std::chrono::duration_cast<std::chrono::milliseconds>(quiet).count(), " ms");
    if (markSet_ && !unresolved_.empty()) {
      std::string some;
      for (const auto& k : unresolved_) some += (some.empty() ? "" : ", ") + k;
      log_.warn("the store is marked ", metadb::kKvNeedsFullResync,
                " and the cloud has not settled ", unresolved_.size(),
                unresolved_.size() == 1 ? " pod" : " pods", " kept running unnamed (", some,
                "): the mark stays; asking again");
      askUnresolved();
    }
    maybeClearMark();
  }

  void askUnresolved() {
    lastAsked_ = clock_.now();
    for (const auto& key : std::set<std::string>(unresolved_))
      startQuery(key, opts_.requestTimeout, [](QueryResult) {});
  }

  void maybeClearMark() {
    if (!markSet_ || !settled_ || !unresolved_.empty() || clearingMark_) return;
    clearingMark_ = true;
    metadb::WriteBatch batch;
    batch.eraseKv(std::string(metadb::kKvNeedsFullResync));
    writes_.write(std::move(batch), loop_, [this](core::Result<metadb::WriteResult> r) {
      clearingMark_ = false;
      if (!r.isOk()) {
        log_.error("clearing ", metadb::kKvNeedsFullResync, ": ", r.status().toString());
        return;
      }
      markSet_ = false;
      log_.info(metadb::kKvNeedsFullResync,
                " cleared: the cloud's resend after connecting is over and every pod kept "
                "unnamed was settled");
    });
  }

  // ---- the outbox, as EdgeCore's patches and twin messages
  void drain() {
    if (stopping_ || !reader_ || state() != LinkState::kConnected) return;
    drainer_.drain(*reader_);
  }

  void sendRow(const metadb::OutboxEntry& e, std::function<void(core::Status)> done) {
    if (e.kind == "podstatus") return sendPodPatch(e, std::move(done));
    if (e.kind == "nodestatus") {
      lastNodeStatus_ = e.payload;
      json status = json::parse(e.payload, nullptr, false);
      if (!status.is_object()) {
        log_.warn("node status in the outbox is not a JSON object; dropped");
        return done(core::okStatus());
      }
      return sendNodePatch(json{{"status", status}}.dump(), std::move(done));
    }
    bool twin = e.kind == "twin" || e.kind == "devicestatus";
    Envelope env = message(twin ? "twin" : "edged", "resource", "update", e.key);
    env.content = json::accept(e.payload) ? e.payload : json(e.payload).dump();
    if (e.kind == "twin") {
      // CloudCore answers edge_updated with "OK".
      return request(env, [done](const Envelope* answer) {
        done(answer ? core::okStatus() : core::unavailable("no answer to the twin update"));
      });
    }
    send(env, std::move(done));
  }

  void sendPodPatch(const metadb::OutboxEntry& e, std::function<void(core::Status)> done) {
    auto parts = metadb::parseKey(e.key);
    json status = json::parse(e.payload, nullptr, false);
    if (!parts.isOk() || !status.is_object()) {
      log_.warn("pod status row for ", e.key, " is not a pod key with a JSON status; dropped");
      return done(core::okStatus());
    }
    auto stored = reader_->get(e.key);
    if (!stored.isOk()) return done(stored.status());
    if (!*stored || status.value("phase", "") == "Removed") {
      // The pod is gone from the desired set: the cloud deleted it, there is nothing to patch.
      log_.debug("status of ", e.key, " not sent: the pod is no longer desired");
      return done(core::okStatus());
    }
    json patch = {{"metadata", {{"uid", (*stored)->uid}}}, {"status", status}};
    Envelope env = message("edged", "meta", "patch", parts->ns + "/podpatch/" + parts->name);
    setContentString(env, patch.dump());
    request(env, [this, key = e.key, done](const Envelope* answer) {
      if (!answer) return done(core::unavailable("no answer to the pod status patch"));
      Answer a = parseAnswer(*answer);
      if (a.error) log_.warn("the cloud refused the status patch of ", key, ": ", a.error->dump());
      done(core::okStatus());
    });
  }

  // ---- receiving
  void invalid(core::Counter& counter, const std::string& what, const std::string& why) {
    counter.inc();
    book_.update([](LinkStatus& s) { s.messagesInvalid++; });
    log_.warn("ignored cloud message ", what, ": ", why);
  }

  void onFrame(uint64_t id, const std::string& text) {
    if (stopping_ || id != connId_) return;
    lastRx_ = clock_.now();
    received_.inc();
    book_.update([](LinkStatus& s) { s.messagesIn++; });
    Decoded d = decode(text, Encoding::kJson, opts_.maxMessageBytes);
    if (d.failure) {
      auto& counter = d.failure->kind == DecodeError::kTooLarge    ? invalidTooLarge_
                      : d.failure->kind == DecodeError::kMalformed ? invalidMalformed_
                                                                   : invalidContent_;
      return invalid(counter, "frame", d.failure->reason);
    }
    Envelope& env = *d.envelope;
    const std::string& op = env.route.operation;
    if ((op == "response" || op == "error") && !env.header.parentMsgId.empty()) {
      auto it = pending_.find(env.header.parentMsgId);
      if (it != pending_.end()) {
        auto done = std::move(it->second.done);
        loop_.cancel(it->second.timer);
        pending_.erase(it);
        return done(&env, "");
      }
    }
    if (isCloudTwinMessage(env.route)) return toTwins(std::move(env));
    if (op == "insert" || op == "update" || op == "patch" || op == "delete") {
      if (!metadb::parseKey(env.route.resource).isOk()) {
        return invalid(invalidAddress_, env.route.resource,
                       "the resource is not <namespace>/<type>/<name>");
      }
      return onDesired(std::move(env));
    }
    log_.debug("cloud message not handled: ", env.route.group, " ", op, " ", env.route.resource);
  }

  void onDesired(Envelope env) {
    lastDesiredRx_ = clock_.now();
    const std::string key = env.route.resource;
    auto change = resourceChangeFrom(env, key, kOrigin);
    if (!change.isOk()) {
      invalid(invalidContent_, key, change.status().message());
      return answerError(env, change.status().message());
    }
    // A delete names the object it removes by uid: a newer object under the same name stays.
    if (change->kind == metadb::ResourceChange::Kind::kDelete && !change->uid.empty()) {
      auto stored = reader_->get(key);
      if (stored.isOk() && *stored && !(*stored)->uid.empty() && (*stored)->uid != change->uid) {
        log_.info("delete of ", key, " names uid ", change->uid, ", the stored object is ",
                  (*stored)->uid, ": kept");
        return ackDesired(env);
      }
    }
    metadb::WriteBatch batch;
    batch.apply(std::move(change).value());
    writes_.write(std::move(batch), loop_,
                  [this, key, env = std::move(env)](core::Result<metadb::WriteResult> r) {
                    if (!r.isOk()) {
                      // Not acknowledged: the cloud sends it again.
                      log_.error("storing ", key, " failed: ", r.status().toString());
                      return;
                    }
                    auto o = r->changes[0];
                    log_.debug(key, ": ",
                               o == metadb::ApplyOutcome::kApplied ? "applied"
                               : o == metadb::ApplyOutcome::kStale ? "stale (kept what is stored)"
                                                                   : "deleted");
                    ackDesired(env);
                  });
  }

  void ackDesired(const Envelope& env) {
    auto parts = metadb::parseKey(env.route.resource);
    // EdgeCore acks devices and device models for its twin module (PROTOCOL.md §2).
    if (parts.isOk() && (parts->type == "device" || parts->type == "devicemodel"))
      return ack(env, "meta", "twin");
    ack(env);
  }

  // ---- twin-group messages: handed to the twins over the bus, acked once they are durable
  void toTwins(Envelope env) {
    lastDesiredRx_ = clock_.now();
    log_.debug("twin message: ", env.route.operation, " ", env.route.resource);
    CloudTwinMessage m;
    m.done = [sink = twinAcks_, env](core::Status s) {
      std::lock_guard lock(sink->mu);
      if (!sink->link) return;  // stopped: the cloud sends it again to the next session
      WebsocketLink* link = sink->link;
      link->loop_.post([link, env, s] { link->onTwinHandled(env, s); });
    };
    m.envelope = std::move(env);
    bus_.publish(kCloudTwinMessages, m);
  }

  void onTwinHandled(const Envelope& env, const core::Status& s) {
    if (stopping_) return;
    if (!s.isOk()) {
      return invalid(invalidContent_, env.route.resource + " (msg_id " + env.header.msgId + ")",
                     s.message());
    }
    ack(env, "meta", "twin");
  }

  WebsocketLinkOptions opts_;
  core::Bus& bus_;
  core::Clock& clock_;
  core::Logger log_;
  metadb::Store& store_;
  core::EventLoop loop_;
  core::Backoff backoff_;
  RateLimiter limiter_;
  StoreWrites writes_;
  OutboxDrainer drainer_;
  core::Gauge& linkUp_;
  LinkStateBook book_;
  core::Counter& reconnects_;
  core::Counter& received_;
  core::Counter& sent_;
  core::Counter& deadlines_;
  core::Counter& timeouts_;
  core::Counter& invalidTooLarge_;
  core::Counter& invalidMalformed_;
  core::Counter& invalidContent_;
  core::Counter& invalidAddress_;

  struct TwinAcks {
    std::mutex mu;
    WebsocketLink* link = nullptr;
  };
  std::shared_ptr<TwinAcks> twinAcks_ = std::make_shared<TwinAcks>();

  struct Pending {
    core::TimerId timer = 0;
    Answered done;
  };

  // On the loop only.
  metadb::StoreReaderPtr reader_;
  WsConnectionPtr conn_;
  uint64_t connId_ = 0;
  std::vector<std::shared_future<void>> closing_;
  std::map<std::string, Pending> pending_;
  std::vector<core::TimerId> timers_;
  core::TimerId reconnectTimer_ = 0, connectTimer_ = 0, pollTimer_ = 0;
  core::MonoTime lastRx_;
  core::MonoTime lastNodePatch_;
  std::string lastNodeStatus_;
  std::optional<json> lease_;
  bool leaseBusy_ = false;
  bool registered_ = false;
  bool registering_ = false;
  bool nodePatchSent_ = false;
  bool explained_ = false;
  bool stopping_ = false;
  // The resync rule, on the loop (see checkResync).
  bool markSet_ = false;              // the store carries needs_full_resync
  std::set<std::string> unresolved_;  // pods asked about while marked, not yet settled by the cloud
  core::MonoTime lastDesiredRx_, lastAsked_;
  bool nodeAnswered_ = false, settled_ = false, clearingMark_ = false;
  std::atomic<bool> stopped_{false};
};

CloudLinkPtr makeWebsocketLink(WebsocketLinkOptions options, metadb::Store& store, core::Bus& bus,
                               core::Clock& clock, core::Logging& logging,
                               core::MetricsRegistry& metrics) {
  return std::make_unique<WebsocketLink>(std::move(options), store, bus, clock, logging, metrics);
}

}  // namespace outpost::cloudhub
