// The session every cloud link runs (session/session.h): connection, back-off, read deadline,
// requests, store-then-ack, outbox drain, state book, twin hand-off, metrics.

#include "session/session.h"

#include <random>

namespace outpost::cloudhub {

namespace {

std::string millis(core::Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

core::Counter& invalidCounter(core::MetricsRegistry& metrics, const char* reason) {
  return metrics.counter("outpost_cloud_messages_invalid_total", "Messages refused, by reason.",
                         {{"reason", reason}});
}

}  // namespace

Session::Session(SessionOptions o, Transport& transport, metadb::Store& store, core::Bus& bus,
                 core::Clock& clock, core::Logging& logging, core::MetricsRegistry& metrics)
    : opts_(std::move(o)),
      transport_(transport),
      store_(store),
      bus_(bus),
      clock_(clock),
      log_(logging.get("cloudhub")),
      loop_(opts_.loopName, clock),
      backoff_(opts_.reconnectBase, opts_.reconnectCap,
               opts_.seed ? *opts_.seed : std::random_device{}()),
      limiter_(clock, opts_.rateQps, opts_.rateBurst),
      writes_(store),
      drainer_(
          loop_, writes_, limiter_, log_,
          [this](const metadb::OutboxEntry& e, SendDone done) {
            protocol_->sendRow(e, std::move(done));
          },
          opts_.drainPage),
      linkUp_(metrics.gauge("outpost_cloud_link_up", "1 when the cloud link is connected.",
                            {{"transport", opts_.transport}})),
      book_(clock, bus, linkUp_, loop_, writes_, log_, transport.endpoint()),
      reconnects_(metrics.counter("outpost_cloud_reconnects_total",
                                  "Connection attempts after the first.",
                                  {{"transport", opts_.transport}})),
      received_(metrics.counter("outpost_cloud_messages_received_total",
                                "Messages received from the cloud.",
                                {{"transport", opts_.transport}})),
      sent_(metrics.counter("outpost_cloud_messages_sent_total",
                            "Messages the cloud accepted from this node.",
                            {{"transport", opts_.transport}})),
      invalidTooLarge_(invalidCounter(metrics, "too_large")),
      invalidMalformed_(invalidCounter(metrics, "malformed")),
      invalidContent_(invalidCounter(metrics, "invalid")),
      invalidAddress_(invalidCounter(metrics, "misaddressed")) {
  if (opts_.readDeadline > core::Duration::zero()) {
    deadlines_ = &metrics.counter(
        "outpost_cloud_read_deadline_expired_total",
        "Connections declared dead: no frame or pong for " + opts_.readDeadlineRule + ".",
        {{"transport", opts_.transport}});
  }
  if (opts_.requests) {
    timeouts_ = &metrics.counter("outpost_cloud_requests_timed_out_total",
                                 "Requests to the cloud that got no answer in time.",
                                 {{"transport", opts_.transport}});
  }
  drainer_.setRedrain([this] { drain(); });
  drainer_.setReporter(
      [this](int64_t rows, const std::string& example) {
        book_.update([&](LinkStatus& st) {
          st.rowsRefused = rows;
          st.rowRefused = example;
        });
      },
      &metrics.counter("outpost_cloud_outbox_send_failures_total",
                       "Outbox rows sent and not taken by the cloud (refused or unanswered).",
                       {{"transport", opts_.transport}}));
  metrics.gaugeCallback(
      "outpost_cloud_outbox_rows_refused",
      "Outbox rows the cloud has not taken after 5 attempts in a row (still retried).",
      [this] { return static_cast<double>(status().rowsRefused); },
      {{"transport", opts_.transport}});
  metrics.gaugeCallback("outpost_cloud_offline_seconds",
                        "Length of the current outage of the cloud link (0 when connected).",
                        [this] { return status().offlineSeconds; },
                        {{"transport", opts_.transport}});
  metrics.gaugeCallback(
      "outpost_cloud_offline_seconds_total", "Time the cloud link was down since start.",
      [this] { return status().offlineSecondsTotal; }, {{"transport", opts_.transport}});
}

Session::~Session() { stop(); }

// ---- the CloudLink calls

core::Status Session::start() {
  {
    std::lock_guard lock(twins_->mu);
    twins_->session = this;
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
        protocol_->started();
      })) {
    return core::internalError("cloudhub loop did not start");
  }
  OUTPOST_RETURN_IF_ERROR(opened.withContext("opening a store reader"));
  loop_.post([this] { connectNow(); });
  return core::okStatus();
}

void Session::stop() {
  if (stopped_.exchange(true)) return;
  {
    std::lock_guard lock(twins_->mu);
    twins_->session = nullptr;
  }
  loop_.runSync([this] {
    stopping_ = true;
    loop_.cancel(reconnectTimer_);
    drainer_.cancelTimers();
    if (protocol_) protocol_->stopping();
    dropConnection(/*closeTransport=*/false);  // shutdown() ends it, saying goodbye first
  });
  // No event reaches this session any more once the transport's threads are gone.
  transport_.shutdown();
  if (!writes_.waitIdle(std::chrono::seconds(10))) log_.error("store writes still pending at stop");
  loop_.runSync([this] { reader_.reset(); });
  loop_.stop();
}

void Session::outboxChanged() {
  loop_.post([this] { drain(); });
}

void Session::reconnectNow(const std::string& why) {
  loop_.post([this, why] {
    if (stopping_) return;
    log_.info(why, ": reconnecting to ", endpoint());
    bool wasConnected = connected();
    dropConnection(/*closeTransport=*/true);
    loop_.cancel(reconnectTimer_);
    reconnectTimer_ = 0;
    backoff_.reset();
    if (wasConnected) book_.set(LinkState::kDisconnected, why);
    connectNow();
  });
}

void Session::post(std::function<void()> task) {
  loop_.post([this, task = std::move(task)] {
    if (!stopping_) task();
  });
}

// ---- connection

void Session::connectNow() {
  reconnectTimer_ = 0;
  if (stopping_) return;
  book_.set(LinkState::kConnecting, endpoint());
  uint64_t id = ++connId_;
  TransportEvents ev;
  ev.opened = [this, id] { loop_.post([this, id] { onOpened(id); }); };
  ev.frame = [this, id](Incoming in) {
    loop_.post([this, id, in = std::move(in)]() mutable { onFrame(id, std::move(in)); });
  };
  ev.heard = [this, id] {
    loop_.post([this, id] {
      if (id == connId_) lastRx_ = clock_.now();
    });
  };
  ev.closed = [this, id](std::string why) {
    loop_.post([this, id, why = std::move(why)] { onClosed(id, why); });
  };
  core::Status s = transport_.connect(opts_.connectTimeout, std::move(ev));
  if (!s.isOk()) return down(s.message());
  // The transport bounds its attempt by the deadline; this one holds should it not.
  connectTimer_ = loop_.runAfter(opts_.connectTimeout + std::chrono::seconds(1), [this, id] {
    connectTimer_ = 0;
    if (id != connId_ || state() != LinkState::kConnecting) return;
    down("no connection within " + millis(opts_.connectTimeout) + " ms");
  });
}

void Session::onOpened(uint64_t id) {
  if (stopping_ || id != connId_ || state() != LinkState::kConnecting) return;
  loop_.cancel(connectTimer_);
  connectTimer_ = 0;
  backoff_.reset();
  lastRx_ = clock_.now();
  book_.set(LinkState::kConnected, endpoint());
  log_.info("connected to ", endpoint());
  if (opts_.readDeadline > core::Duration::zero()) {
    every(std::max<core::Duration>(opts_.readDeadline / 8, std::chrono::milliseconds(50)),
          [this] { checkDeadline(); });
  }
  protocol_->opened();
  drain();
}

void Session::onFrame(uint64_t id, Incoming in) {
  if (stopping_ || id != connId_) return;
  lastRx_ = clock_.now();
  received_.inc();
  book_.update([](LinkStatus& s) { s.messagesIn++; });
  protocol_->frame(in);
}

void Session::onClosed(uint64_t id, const std::string& why) {
  if (stopping_ || id != connId_) return;
  down(why);
}

void Session::checkDeadline() {
  auto silent = clock_.now() - lastRx_;
  if (silent <= opts_.readDeadline) return;
  if (deadlines_) deadlines_->inc();
  down("no frame or pong from the cloud for " + millis(silent) +
       " ms (read deadline: " + opts_.readDeadlineRule + ")");
}

// A connect attempt failed or the connection was lost: forget it and try again after the back-off.
void Session::down(const std::string& why) {
  if (stopping_ || state() == LinkState::kDisconnected) return;  // already scheduled
  bool wasConnected = connected();
  dropConnection(/*closeTransport=*/true);
  std::string detail = why;
  protocol_->failed(why, wasConnected, detail);
  book_.set(LinkState::kDisconnected, detail);
  auto delay = backoff_.next();
  if (wasConnected) {
    log_.warn("cloud link down: ", why, "; reconnecting in ", millis(delay), " ms");
  } else {
    log_.warn("connecting to ", endpoint(), " failed: ", why, "; retrying in ", millis(delay),
              " ms");
  }
  reconnects_.inc();
  book_.update([](LinkStatus& s) { s.reconnects++; });
  loop_.cancel(reconnectTimer_);
  reconnectTimer_ = loop_.runAfter(delay, [this] { connectNow(); });
}

// Forgets the current connection and everything tied to it; its events are ignored from here on.
void Session::dropConnection(bool closeTransport) {
  for (auto t : timers_) loop_.cancel(t);
  timers_.clear();
  loop_.cancel(connectTimer_);
  connectTimer_ = 0;
  ++connId_;
  if (closeTransport) transport_.close();
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    loop_.cancel(p.timer);
    p.done(nullptr, "transport error: the connection went away");
  }
  drainer_.reset();
  if (protocol_) protocol_->closed();
}

void Session::every(core::Duration period, std::function<void()> f) {
  timers_.push_back(loop_.runEvery(period, std::move(f)));
}

// ---- sending

Envelope Session::message(std::string source, std::string group, std::string operation,
                          std::string resource) const {
  Envelope e;
  e.header.msgId = newMessageId();
  e.header.timestamp = core::toUnixMillis(clock_.wallNow());
  e.route.source = std::move(source);
  e.route.group = std::move(group);
  e.route.operation = std::move(operation);
  e.route.resource = std::move(resource);
  return e;
}

void Session::countSent() {
  sent_.inc();
  book_.update([](LinkStatus& s) { s.messagesOut++; });
}

void Session::send(Outgoing out, SendDone done) {
  if (stopping_ || !connected()) {
    if (done) done(core::unavailable("not connected"));
    return;
  }
  transport_.send(std::move(out), [this, done = std::move(done)](core::Status s) {
    loop_.post([this, s, done] {
      if (stopping_) return;
      if (done) done(s);
    });
  });
}

void Session::send(const Envelope& env, std::string channel, SendDone done) {
  send(Outgoing{std::move(channel), encode(env, opts_.encoding), false},
       [this, done = std::move(done)](core::Status s) {
         if (s.isOk()) countSent();
         if (done) done(s);
       });
}

void Session::request(const Envelope& env, std::string channel, core::Duration timeout,
                      Answered answered) {
  std::string id = env.header.msgId;
  std::string what = env.route.operation + " " + env.route.resource;
  std::string ms = millis(timeout);
  Pending p;
  p.done = std::move(answered);
  p.timer = loop_.runAfter(timeout, [this, id, what, ms] {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    auto done = std::move(it->second.done);
    pending_.erase(it);
    if (timeouts_) timeouts_->inc();
    log_.warn("no answer from the cloud to ", what, " within ", ms, " ms");
    done(nullptr, "timeout: no answer within " + ms + " ms");
  });
  pending_[id] = std::move(p);
  send(env, std::move(channel), [this, id](core::Status s) {
    if (s.isOk()) return;
    auto it = pending_.find(id);  // not sent: no answer will come
    if (it == pending_.end()) return;
    auto done = std::move(it->second.done);
    loop_.cancel(it->second.timer);
    pending_.erase(it);
    done(nullptr, "transport error: " + s.message());
  });
}

bool Session::resolve(const Envelope& env) {
  const std::string& op = env.route.operation;
  if ((op != "response" && op != "error") || env.header.parentMsgId.empty()) return false;
  auto it = pending_.find(env.header.parentMsgId);
  if (it == pending_.end()) return false;
  auto done = std::move(it->second.done);
  loop_.cancel(it->second.timer);
  pending_.erase(it);
  done(&env, "");
  return true;
}

// ---- receiving

void Session::storeThenAck(metadb::WriteBatch batch, std::string key,
                           std::function<void(const metadb::WriteResult&)> stored,
                           std::function<void()> failed) {
  writes_.write(std::move(batch), loop_,
                [this, key = std::move(key), stored = std::move(stored),
                 failed = std::move(failed)](core::Result<metadb::WriteResult> r) {
                  if (!r.isOk()) {
                    log_.error("storing ", key, " failed: ", r.status().toString());
                    if (failed) failed();
                    return;
                  }
                  if (!r->changes.empty()) {
                    auto o = r->changes[0];
                    log_.debug(key, ": ",
                               o == metadb::ApplyOutcome::kApplied ? "applied"
                               : o == metadb::ApplyOutcome::kStale ? "stale (kept what is stored)"
                                                                   : "deleted");
                  }
                  stored(*r);
                });
}

void Session::toTwins(Envelope env, std::string what) {
  log_.debug("twin message: ", env.route.operation, " ", env.route.resource);
  CloudTwinMessage m;
  m.done = [sink = twins_, env, what = std::move(what)](core::Status s) {
    std::lock_guard lock(sink->mu);
    if (!sink->session) return;  // stopped: the cloud sends it again to the next session
    Session* session = sink->session;
    session->loop_.post([session, env, what, s] { session->onTwinHandled(env, what, s); });
  };
  m.envelope = std::move(env);
  bus_.publish(kCloudTwinMessages, m);
}

void Session::onTwinHandled(const Envelope& env, const std::string& what, const core::Status& s) {
  if (stopping_) return;
  if (!s.isOk()) {
    return invalid(Invalid::kContent, what,
                   env.route.resource + " (msg_id " + env.header.msgId + "): " + s.message());
  }
  protocol_->ackTwin(env);
}

void Session::invalid(Invalid kind, const std::string& what, const std::string& why, bool again) {
  core::Counter& counter = kind == Invalid::kTooLarge    ? invalidTooLarge_
                           : kind == Invalid::kMalformed ? invalidMalformed_
                           : kind == Invalid::kContent   ? invalidContent_
                                                         : invalidAddress_;
  counter.inc();
  book_.update([](LinkStatus& s) { s.messagesInvalid++; });
  if (again) {
    log_.debug("ignored ", what, " again: ", why);
  } else {
    log_.warn("ignored ", what, ": ", why);
  }
}

void Session::invalid(const DecodeFailure& failure, const std::string& what) {
  invalid(failure.kind == DecodeError::kTooLarge    ? Invalid::kTooLarge
          : failure.kind == DecodeError::kMalformed ? Invalid::kMalformed
                                                    : Invalid::kContent,
          what, failure.reason);
}

std::optional<Envelope> Session::decode(std::string_view payload, size_t maxBytes,
                                        const std::string& what) {
  Decoded d = cloudhub::decode(payload, opts_.encoding, maxBytes);
  if (d.failure) {
    invalid(*d.failure, what);
    return std::nullopt;
  }
  return std::move(d.envelope);
}

// ---- the outbox

void Session::drain() {
  if (stopping_ || !reader_ || !connected()) return;
  drainer_.drain(*reader_);
}

}  // namespace outpost::cloudhub
