#include "session.h"

#include <algorithm>

namespace outpost::stream {

namespace {

using Clock = std::chrono::steady_clock;
// A session's data leaves in messages of at most this many bytes (and at most its rate).
constexpr size_t kMaxDataMessage = size_t{32} << 10;
// Refusals past stream.max_sessions being answered at once; more connects are dropped unanswered.
constexpr size_t kMaxRefusing = 16;
// Bytes from the cloud kept for a relay that is still connecting.
constexpr size_t kMaxPending = size_t{1} << 20;

const char* httpReason(core::Code code) {
  switch (code) {
    case core::Code::kNotFound:
      return "404 Not Found";
    case core::Code::kInvalidArgument:
      return "400 Bad Request";
    case core::Code::kResourceExhausted:
      return "429 Too Many Requests";
    case core::Code::kUnimplemented:
      return "501 Not Implemented";
    default:
      return "503 Service Unavailable";
  }
}

}  // namespace

SessionMetrics::SessionMetrics(core::MetricsRegistry& m, core::Logger logger)
    : log(std::move(logger)),
      active(m.gauge("outpost_stream_sessions", "Stream tunnel sessions being served")),
      logs(m.counter("outpost_stream_sessions_total", "Stream tunnel sessions started",
                     {{"kind", "logs"}})),
      exec(m.counter("outpost_stream_sessions_total", "Stream tunnel sessions started",
                     {{"kind", "exec"}})),
      attach(m.counter("outpost_stream_sessions_total", "Stream tunnel sessions started",
                       {{"kind", "attach"}})),
      metrics(m.counter("outpost_stream_sessions_total", "Stream tunnel sessions started",
                        {{"kind", "metrics"}})),
      bytesSent(m.counter("outpost_stream_bytes_sent_total",
                          "Session bytes sent toward the cloud over the stream tunnel")),
      refusedInvalid(m.counter("outpost_stream_refused_total",
                               "Stream tunnel requests refused, by reason",
                               {{"reason", "invalid"}})),
      refusedLimit(m.counter("outpost_stream_refused_total",
                             "Stream tunnel requests refused, by reason", {{"reason", "limit"}})),
      refusedNotFound(m.counter("outpost_stream_refused_total",
                                "Stream tunnel requests refused, by reason",
                                {{"reason", "not_found"}})),
      refusedUnavailable(m.counter("outpost_stream_refused_total",
                                   "Stream tunnel requests refused, by reason",
                                   {{"reason", "unavailable"}})),
      idleClosed(m.counter("outpost_stream_idle_closed_total",
                           "Stream tunnel sessions ended by stream.idle_timeout")),
      malformed(m.counter("outpost_stream_malformed_total",
                          "Tunnel messages that were not tunnel messages, or of an unknown type")) {
}

Session::Session(uint64_t id, Sender& sender, const TunnelOptions& options, SessionMetrics& metrics)
    : id_(id),
      sender_(sender),
      options_(options),
      metrics_(metrics),
      lastActive_(Clock::now()),
      tokens_(static_cast<double>(options.limits.maxBytesPerSecond)),
      refill_(Clock::now()) {}

bool Session::throttle(size_t n) {
  std::unique_lock lock(mu_);
  const auto rate = static_cast<double>(options_.limits.maxBytesPerSecond);
  for (;;) {
    if (stopped_) return false;
    auto now = Clock::now();
    tokens_ = std::min(rate, tokens_ + rate * std::chrono::duration<double>(now - refill_).count());
    refill_ = now;
    if (tokens_ >= static_cast<double>(n)) {
      tokens_ -= static_cast<double>(n);
      lastActive_ = now;
      return true;
    }
    auto wait = std::chrono::duration<double>((static_cast<double>(n) - tokens_) / rate);
    cv_.wait_for(lock, std::chrono::duration_cast<Clock::duration>(wait));
  }
}

bool Session::sendData(std::string_view bytes) {
  const size_t part =
      std::max<size_t>(1, std::min<size_t>(kMaxDataMessage, options_.limits.maxBytesPerSecond));
  while (!bytes.empty()) {
    size_t n = std::min(part, bytes.size());
    if (!throttle(n)) return false;
    if (!sender_.send(encodeMessage(id_, MessageType::kData, bytes.substr(0, n)))) {
      stop(false);
      return false;
    }
    metrics_.bytesSent.inc(static_cast<double>(n));
    bytes.remove_prefix(n);
  }
  return true;
}

void Session::refuse(const core::Status& why, bool http) {
  switch (why.code()) {
    case core::Code::kNotFound:
      metrics_.refusedNotFound.inc();
      break;
    case core::Code::kInvalidArgument:
      metrics_.refusedInvalid.inc();
      break;
    case core::Code::kResourceExhausted:
      metrics_.refusedLimit.inc();
      break;
    default:
      metrics_.refusedUnavailable.inc();
      break;
  }
  metrics_.log.warn("session ", id_, " refused: ", why.message());
  std::string body = why.message() + "\n";
  if (http) {
    // exec and attach relay the runtime's HTTP answer as it is: a refusal is one too.
    body = std::string("HTTP/1.1 ") + httpReason(why.code()) +
           "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }
  if (sender_.send(encodeMessage(id_, MessageType::kData, body))) {
    metrics_.bytesSent.inc(static_cast<double>(body.size()));
  }
}

bool Session::wait(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [&] { return stopped_; });
  return !stopped_;
}

void Session::stop(bool byCloud) {
  RelaySession relay;
  {
    std::lock_guard lock(mu_);
    if (!stopped_) byCloud_ = byCloud;
    stopped_ = true;
    if (hasRelay_) relay = relay_;
  }
  cv_.notify_all();
  if (relay.close) relay.close();
}

bool Session::stopped() const {
  std::lock_guard lock(mu_);
  return stopped_;
}

bool Session::idle() const {
  std::lock_guard lock(mu_);
  return Clock::now() - lastActive_ >= options_.limits.idleTimeout;
}

void Session::touch() {
  std::lock_guard lock(mu_);
  lastActive_ = Clock::now();
}

void Session::deliver(std::string bytes) {
  std::function<void(std::string)> write;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    lastActive_ = Clock::now();
    if (!hasRelay_) {
      if (pending_.size() + bytes.size() > kMaxPending) {
        stopped_ = true;
        cv_.notify_all();
        return;
      }
      pending_ += bytes;
      return;
    }
    write = relay_.write;
  }
  if (write) write(std::move(bytes));
}

void Session::setRelay(RelaySession relay) {
  std::string pending;
  bool stopped = false;
  {
    std::lock_guard lock(mu_);
    relay_ = relay;
    hasRelay_ = true;
    pending = std::move(pending_);
    pending_.clear();
    stopped = stopped_;
  }
  if (!pending.empty() && relay.write) relay.write(std::move(pending));
  if (stopped && relay.close) relay.close();
}

void Session::relayDone(const std::string& reason) {
  if (!reason.empty()) metrics_.log.info("session ", id_, ": relay ended: ", reason);
  {
    std::lock_guard lock(mu_);
    relayEnded_ = true;
  }
  cv_.notify_all();
}

bool Session::relayEnded() const {
  std::lock_guard lock(mu_);
  return relayEnded_;
}

void Session::finish() {
  bool tell = false;
  {
    std::lock_guard lock(mu_);
    tell = !finished_ && !byCloud_;
    finished_ = true;
    stopped_ = true;
  }
  cv_.notify_all();
  if (tell) (void)sender_.send(encodeMessage(id_, MessageType::kRemoveConnect, {}));
}

void serveMetrics(Session& s, RuntimeStreams& streams) {
  auto text = streams.resourceMetrics();
  if (!text.isOk()) return s.refuse(text.status(), false);
  s.sendData(*text);
}

void serveStream(Session& s, const ConnectRequest& r, RuntimeStreams& streams,
                 const RelayFactory& relays) {
  core::Result<std::string> url = core::unavailable("");
  if (r.endpoint == Endpoint::kExec) {
    url = streams.execUrl({r.ref, r.command, r.stdin, r.stdout, r.stderr, r.tty});
  } else {
    url = streams.attachUrl({r.ref, r.stdin, r.stdout, r.stderr, r.tty});
  }
  if (!url.isOk()) return s.refuse(url.status(), true);
  if (!relays) return s.refuse(core::unimplemented("exec and attach are not served here"), true);
  auto relay = relays(
      *url, r.method, r.headers, [&s](std::string bytes) { s.sendData(bytes); },
      [&s](std::string reason) { s.relayDone(reason); });
  if (!relay.isOk()) return s.refuse(relay.status(), true);
  s.setRelay(*relay);
  const auto tick = std::min<std::chrono::milliseconds>(s.options().limits.idleTimeout,
                                                        std::chrono::milliseconds(1000));
  while (s.wait(tick) && !s.relayEnded()) {
    if (s.idle()) {
      s.metrics().idleClosed.inc();
      break;
    }
  }
  if (relay->close) relay->close();
  // Done follows close: wait for it, so the relay never calls back into a finished session.
  while (!s.relayEnded()) {
    (void)s.wait(std::chrono::milliseconds(50));
  }
}

SessionMux::SessionMux(const TunnelOptions& options, RuntimeStreams& streams,
                       const RelayFactory& relays, SessionMetrics& metrics, Sender& sender)
    : options_(options), streams_(streams), relays_(relays), metrics_(metrics), sender_(sender) {}

SessionMux::~SessionMux() { endAll(); }

size_t SessionMux::active() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(sessions_.begin(), sessions_.end(),
                                           [](const auto& e) { return !e.second.done->load(); }));
}

void SessionMux::onMessage(std::string_view bytes) {
  auto m = decodeMessage(bytes);
  if (!m.isOk()) {
    metrics_.malformed.inc();
    metrics_.log.warn("tunnel message dropped: ", m.status().message());
    return;
  }
  switch (static_cast<MessageType>(m->type)) {
    case MessageType::kLogsConnect:
    case MessageType::kExecConnect:
    case MessageType::kMetricConnect:
    case MessageType::kAttachConnect:
      return connect(*m);
    case MessageType::kData:
    case MessageType::kRemoveConnect: {
      std::shared_ptr<Session> s;
      {
        std::lock_guard lock(mu_);
        auto it = sessions_.find(m->id);
        if (it != sessions_.end()) s = it->second.session;
      }
      if (!s) return;  // a session that ended already: its last messages cross ours
      if (m->type == static_cast<uint64_t>(MessageType::kData)) {
        s->deliver(std::move(m->data));
      } else {
        s->stop(true);
      }
      return;
    }
    default:
      // EdgeCore panics here; we count it and tell the cloud the id is not served.
      metrics_.malformed.inc();
      metrics_.log.warn("tunnel message of unknown type ", m->type, " for session ", m->id,
                        " refused");
      (void)sender_.sendNow(encodeMessage(m->id, MessageType::kRemoveConnect, {}));
      return;
  }
}

void SessionMux::connect(const Message& m) {
  reap();
  auto type = static_cast<MessageType>(m.type);
  auto session = std::make_shared<Session>(m.id, sender_, options_, metrics_);
  auto done = std::make_shared<std::atomic<bool>>(false);
  bool http = type == MessageType::kExecConnect || type == MessageType::kAttachConnect;
  auto request = parseConnect(type, m.data);
  std::lock_guard lock(mu_);
  if (ended_) return;
  if (sessions_.count(m.id) != 0) {
    metrics_.malformed.inc();
    metrics_.log.warn("connect for session ", m.id, " that is already open: ignored");
    return;
  }
  size_t open = static_cast<size_t>(std::count_if(
      sessions_.begin(), sessions_.end(), [](const auto& x) { return !x.second.done->load(); }));
  if (open >= options_.limits.maxSessions + kMaxRefusing) {
    // A flood of connects: no thread for each refusal; the cloud's side times out.
    metrics_.refusedLimit.inc();
    metrics_.log.warn("connect for session ", m.id, " dropped: ", open,
                      " sessions open or refused");
    return;
  }
  if (open >= options_.limits.maxSessions) {
    // Not on this thread: the refusal may wait for the connection.
    core::Status why = core::resourceExhausted(
        "too many stream sessions: " + std::to_string(options_.limits.maxSessions) +
        " are open (stream.max_sessions)");
    request = why;
  }
  Entry e;
  e.session = session;
  e.done = done;
  if (type == MessageType::kLogsConnect) metrics_.logs.inc();
  if (type == MessageType::kExecConnect) metrics_.exec.inc();
  if (type == MessageType::kAttachConnect) metrics_.attach.inc();
  if (type == MessageType::kMetricConnect) metrics_.metrics.inc();
  metrics_.active.inc();
  e.thread = std::thread([this, session, done, http, request = std::move(request)]() mutable {
    if (!request.isOk()) {
      session->refuse(request.status(), http);
    } else if (request->endpoint == Endpoint::kContainerLogs) {
      serveLogs(*session, *request, streams_);
    } else if (request->endpoint == Endpoint::kMetricsResource) {
      serveMetrics(*session, streams_);
    } else {
      serveStream(*session, *request, streams_, relays_);
    }
    session->finish();
    metrics_.active.dec();
    done->store(true);
  });
  sessions_.emplace(m.id, std::move(e));
}

void SessionMux::reap() {
  std::vector<std::thread> finished;
  {
    std::lock_guard lock(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second.done->load()) {
        finished.push_back(std::move(it->second.thread));
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& t : finished) t.join();
}

void SessionMux::endAll() {
  std::map<uint64_t, Entry> all;
  {
    std::lock_guard lock(mu_);
    ended_ = true;
    all.swap(sessions_);
  }
  for (auto& [id, e] : all) e.session->stop(false);
  for (auto& [id, e] : all) {
    if (e.thread.joinable()) e.thread.join();
  }
}

}  // namespace outpost::stream
