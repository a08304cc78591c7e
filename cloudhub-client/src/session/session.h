#pragma once
// Session: what every cloud link does whatever its transport and protocol: connects with a deadline
// and reconnects with back-off and jitter, finds a silent peer by a read deadline, matches answers
// to requests (by parent_msg_id), stores before it acks, drains the outbox within the rate limit,
// keeps the link's state book (LinkStatus, kLinkEvents), hands twin messages to the twins
// (kCloudTwinMessages) and counts it all in the metrics. What a protocol adds (KubeEdge's EdgeCore
// cadence, the MQTT scheme's manifests and batch acks) is a SessionProtocol; how bytes travel is a
// Transport. Everything below runs on the session's loop unless it says otherwise.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "outpost/cloudhub/envelope.h"
#include "outpost/cloudhub/link.h"
#include "outpost/core/backoff.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/store.h"
#include "session/rate_limiter.h"
#include "session/session_parts.h"
#include "session/transport.h"

namespace outpost::cloudhub {

using SendDone = std::function<void(core::Status)>;

// The part of a link its protocol decides. The session calls it on its loop.
class SessionProtocol {
 public:
  virtual ~SessionProtocol() = default;
  // At start, the store reader open (Session::reader()).
  virtual void started() {}
  // The connection is up (the state is connected); the session drains the outbox after this.
  virtual void opened() = 0;
  // One message of the current connection (already counted as received).
  virtual void frame(const Incoming& in) = 0;
  // The connection went away (or the link stops): forget what was tied to it.
  virtual void closed() {}
  // A connect attempt failed or the connection was lost with `why`; `detail` (the status' last
  // error, `why` at first) may be added to. Called before the back-off starts.
  virtual void failed(const std::string& why, bool wasConnected, std::string& detail) {
    (void)why, (void)wasConnected, (void)detail;
  }
  // Sends one outbox row; `done` (on the loop) says whether the cloud has it.
  virtual void sendRow(const metadb::OutboxEntry& e, SendDone done) = 0;
  // The twins made a twin message durable: acknowledge it upstream.
  virtual void ackTwin(const Envelope& env) = 0;
  // The link stops: cancel the protocol's own timers.
  virtual void stopping() {}
};

struct SessionOptions {
  std::string transport;  // the metrics' `transport` label: "websocket", "mqtt"
  std::string loopName;   // the loop thread's name
  Encoding encoding = Encoding::kJson;
  core::Duration connectTimeout = std::chrono::seconds(10);
  core::Duration reconnectBase = std::chrono::seconds(1);
  core::Duration reconnectCap = std::chrono::seconds(60);
  // No message or sign of life for longer than this: the connection is dead. Zero: none (the
  // transport's own keepalive finds a dead peer).
  core::Duration readDeadline = core::Duration::zero();
  std::string readDeadlineRule;  // for the log: how the deadline is set ("2 x heartbeat")
  double rateQps = 30;
  int rateBurst = 60;
  size_t drainPage = 64;
  bool requests = false;         // the protocol makes requests (counts their timeouts)
  std::optional<uint64_t> seed;  // of the back-off's jitter; random when absent
};

class Session {
 public:
  // Called with the cloud's answer, or nullptr and why there is none.
  using Answered = std::function<void(const Envelope* answer, const std::string& why)>;
  enum class Invalid { kTooLarge, kMalformed, kContent, kAddress };

  Session(SessionOptions options, Transport& transport, metadb::Store& store, core::Bus& bus,
          core::Clock& clock, core::Logging& logging, core::MetricsRegistry& metrics);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The protocol, set once before start().
  void setProtocol(SessionProtocol& protocol) { protocol_ = &protocol; }

  // ---- the CloudLink calls (any thread)
  core::Status start();
  void stop();
  LinkStatus status() const { return book_.status(); }
  void outboxChanged();
  bool alive(std::chrono::milliseconds timeout) {
    return loop_.runSync([] {}, timeout);
  }
  // Drops the connection (or attempt) and connects again at once, back-off reset.
  void reconnectNow(const std::string& why);
  // Runs `task` on the loop unless the link stops.
  void post(std::function<void()> task);

  // ---- for the protocol (on the loop)
  core::EventLoop& loop() { return loop_; }
  core::Clock& clock() { return clock_; }
  core::Logger& log() { return log_; }
  metadb::StoreReader* reader() { return reader_.get(); }
  StoreWrites& writes() { return writes_; }
  LinkStateBook& book() { return book_; }
  LinkState state() const { return book_.state(); }
  bool connected() const { return book_.state() == LinkState::kConnected; }
  bool stopping() const { return stopping_; }
  const std::string& endpoint() const { return transport_.endpoint(); }
  // Failed attempts since the last connect.
  int attempts() const { return backoff_.attempts(); }

  // A fresh envelope of ours.
  Envelope message(std::string source, std::string group, std::string operation,
                   std::string resource) const;
  // Sends a message; `done` runs on the loop with the outcome (not at all once the link stops).
  void send(Outgoing out, SendDone done);
  // Encodes and sends an envelope on `channel`.
  void send(const Envelope& env, std::string channel, SendDone done);
  // Sends a request and calls `answered` with the cloud's answer (matched by parent_msg_id), or
  // with nullptr and the reason when none came within `timeout` ("timeout: ...") or it could not
  // be sent or the connection went away ("transport error: ...").
  void request(const Envelope& env, std::string channel, core::Duration timeout, Answered answered);
  // An answer to a pending request goes to it: true when `env` was one.
  bool resolve(const Envelope& env);

  // Store-then-ack: writes `batch` (the change of `key` a cloud message asked for). `stored` runs
  // only once the store has it: that is when the caller may acknowledge. A failed write is logged
  // and `failed` runs instead; nothing is acknowledged, so the cloud sends it again.
  void storeThenAck(metadb::WriteBatch batch, std::string key,
                    std::function<void(const metadb::WriteResult&)> stored,
                    std::function<void()> failed = {});

  // Hands a twin-group message to the twins (kCloudTwinMessages); once they made it durable the
  // protocol acks it (SessionProtocol::ackTwin); a message they refused is counted invalid as
  // `what`.
  void toTwins(Envelope env, std::string what);

  // Counts and logs a refused message: "ignored <what>: <why>" (at debug level when `again`: the
  // same message was reported before).
  void invalid(Invalid kind, const std::string& what, const std::string& why, bool again = false);
  void invalid(const DecodeFailure& failure, const std::string& what);
  // Decodes `payload` in the session's encoding; a refused one is counted (as `what`).
  std::optional<Envelope> decode(std::string_view payload, size_t maxBytes,
                                 const std::string& what);

  // Asks the transport for a sign of life (Transport::ping).
  void ping() { transport_.ping(); }
  // A timer that lives as long as the current connection.
  void every(core::Duration period, std::function<void()> f);
  // Counts a message the cloud accepted.
  void countSent();

 private:
  struct TwinSink {
    std::mutex mu;
    Session* session = nullptr;
  };
  struct Pending {
    core::TimerId timer = 0;
    Answered done;
  };

  void connectNow();
  void onOpened(uint64_t id);
  void onFrame(uint64_t id, Incoming in);
  void onClosed(uint64_t id, const std::string& why);
  void down(const std::string& why);
  void checkDeadline();
  void dropConnection(bool closeTransport);
  void drain();
  void onTwinHandled(const Envelope& env, const std::string& what, const core::Status& s);

  SessionOptions opts_;
  Transport& transport_;
  metadb::Store& store_;
  core::Bus& bus_;
  core::Clock& clock_;
  core::Logger log_;
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
  core::Counter* deadlines_ = nullptr;  // with a read deadline
  core::Counter* timeouts_ = nullptr;   // with requests
  core::Counter& invalidTooLarge_;
  core::Counter& invalidMalformed_;
  core::Counter& invalidContent_;
  core::Counter& invalidAddress_;
  SessionProtocol* protocol_ = nullptr;
  std::shared_ptr<TwinSink> twins_ = std::make_shared<TwinSink>();

  // On the loop only.
  metadb::StoreReaderPtr reader_;
  uint64_t connId_ = 0;  // events of older connections are ignored
  std::map<std::string, Pending> pending_;
  std::vector<core::TimerId> timers_;
  core::TimerId reconnectTimer_ = 0, connectTimer_ = 0;
  core::MonoTime lastRx_;
  bool stopping_ = false;
  std::atomic<bool> stopped_{false};
};

// A CloudLink whose calls go to its Session (both links are one). The derived link owns the
// session, its protocol part and transport, and calls stop() in its destructor.
class SessionLink : public CloudLink {
 public:
  core::Status start() override { return session_.start(); }
  void stop() override { session_.stop(); }
  LinkStatus status() const override { return session_.status(); }
  void outboxChanged() override { session_.outboxChanged(); }
  bool alive(std::chrono::milliseconds timeout) override { return session_.alive(timeout); }

 protected:
  // `session` is a member of the derived link: used only once it is made.
  explicit SessionLink(Session& session) : session_(session) {}

 private:
  Session& session_;
};

}  // namespace outpost::cloudhub
