// The tunnel's life: dial, serve the connection's sessions, and after it ended (or failed) wait a
// jittered back-off and dial again, until stop(). One thread of its own does this; the
// connection's events only record and wake it, so nothing waits on the connection's thread.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "outpost/core/backoff.h"
#include "outpost/core/check.h"
#include "outpost/validation/validation.h"
#include "session.h"

namespace outpost::stream {

namespace {

// Bytes queued on the connection and not yet written, past which a session's send waits: a slow
// uplink slows the sessions instead of growing the queue.
constexpr size_t kMaxInflightBytes = size_t{1} << 20;

class TunnelImpl final : public Tunnel, public Sender {
 public:
  TunnelImpl(TunnelOptions options, Dialer dialer, RuntimeStreams& streams, RelayFactory relays,
             core::MetricsRegistry& metrics, core::Logger log)
      : options_(options),
        dialer_(std::move(dialer)),
        streams_(streams),
        relays_(std::move(relays)),
        sessionMetrics_(metrics, log),
        log_(std::move(log)),
        connected_(metrics.gauge("outpost_stream_tunnel_connected",
                                 "1 while the stream tunnel to CloudCore is open")),
        connects_(metrics.counter("outpost_stream_tunnel_connects_total",
                                  "Stream tunnel connections opened")),
        failures_(
            metrics.counter("outpost_stream_tunnel_failures_total",
                            "Stream tunnel connects that failed and connections that ended")) {}

  ~TunnelImpl() override { stop(); }

  // ---- Tunnel
  void start() override {
    std::lock_guard lock(mu_);
    if (started_) return;
    started_ = true;
    thread_ = std::thread([this] { run(); });
  }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  TunnelStatus status() const override {
    std::lock_guard lock(mu_);
    TunnelStatus s;
    s.connected = open_;
    s.lastError = lastError_;
    s.connects = connectCount_;
    s.sessions = static_cast<size_t>(sessionMetrics_.active.value());
    return s;
  }

  // ---- Sender
  bool send(std::string message) override { return put(std::move(message), true); }
  bool sendNow(std::string message) override { return put(std::move(message), false); }

 private:
  bool put(std::string message, bool wait) {
    std::shared_ptr<TunnelConnection> conn;
    uint64_t gen = 0;
    const size_t n = message.size();
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        return !handingOver() && (!wait || !alive() || inflight_ < kMaxInflightBytes);
      });
      if (!alive()) return false;
      inflight_ += n;
      conn = conn_;
      gen = generation_;
    }
    conn->send(std::move(message), [this, gen, n](bool written) {
      {
        std::lock_guard lock(mu_);
        if (gen == generation_) inflight_ -= std::min(inflight_, n);
        if (!written && gen == generation_ && !ended_) {
          ended_ = true;
          endReason_ = "a message could not be written";
        }
      }
      cv_.notify_all();
    });
    return true;
  }

  bool alive() const { return conn_ && open_ && !ended_ && !stopping_; }
  // The connection opened (and may have delivered messages, whose sessions answer at once) before
  // its dialer returned it: it is handed over in a moment, and an answer waits for that.
  bool handingOver() const { return open_ && !conn_ && !ended_ && !stopping_; }

  void heard(uint64_t gen) {
    std::lock_guard l(mu_);
    if (gen == generation_) lastHeard_ = std::chrono::steady_clock::now();
  }

  void end(uint64_t gen, std::string why) {
    {
      std::lock_guard l(mu_);
      if (gen != generation_ || ended_) return;
      ended_ = true;
      endReason_ = std::move(why);
    }
    cv_.notify_all();
  }

  void run() {
    core::Backoff backoff(options_.backoffBase, options_.backoffCap);
    std::unique_lock lock(mu_);
    while (!stopping_) {
      ++generation_;
      const uint64_t gen = generation_;
      ended_ = false;
      open_ = false;
      inflight_ = 0;
      endReason_.clear();
      mux_ = std::make_unique<SessionMux>(options_, streams_, relays_, sessionMetrics_, *this);
      SessionMux* mux = mux_.get();
      TunnelConnectionEvents events;
      events.opened = [this, gen] {
        {
          std::lock_guard l(mu_);
          if (gen != generation_) return;
          open_ = true;
          ++connectCount_;
        }
        connected_.set(1);
        connects_.inc();
        log_.info("stream tunnel open");
        cv_.notify_all();
      };
      events.message = [this, gen, mux](std::string message) {
        heard(gen);
        auto m = decodeMessage(message);
        if (m.isOk() && m->type == static_cast<uint64_t>(MessageType::kCloseConnect)) {
          // cloudstream could not take the node (it failed to record the kubelet endpoint).
          return end(gen, "the cloud closed the tunnel: " + validation::printable(m->data, 200));
        }
        mux->onMessage(message);
      };
      events.heard = [this, gen] { heard(gen); };
      events.ended = [this, gen](std::string why) { end(gen, std::move(why)); };
      lock.unlock();
      auto dialed = dialer_(std::move(events));
      lock.lock();
      if (dialed.isOk()) {
        conn_ = *dialed;
        cv_.notify_all();  // answers that waited for the handover
        cv_.wait(lock, [&] { return stopping_ || ended_; });
      } else {
        endReason_ = dialed.status().message();
      }
      bool wasOpen = open_;
      open_ = false;
      std::string why = stopping_ && !ended_ ? "stopped" : endReason_;
      auto conn = std::move(conn_);
      conn_.reset();
      auto ending = std::move(mux_);
      lock.unlock();
      cv_.notify_all();  // sends waiting for room give up
      connected_.set(0);
      if (conn) conn->close();  // no event after this
      ending->endAll();
      ending.reset();
      lock.lock();
      if (stopping_) break;
      lastError_ = why;
      failures_.inc();
      if (wasOpen) {
        log_.warn("stream tunnel closed: ", why);
        backoff.reset();
      } else {
        log_.warn("stream tunnel: cannot connect: ", why);
      }
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(backoff.next());
      cv_.wait_for(lock, wait, [&] { return stopping_; });
    }
  }

  const TunnelOptions options_;
  const Dialer dialer_;
  RuntimeStreams& streams_;
  const RelayFactory relays_;
  SessionMetrics sessionMetrics_;
  core::Logger log_;
  core::Gauge& connected_;
  core::Counter& connects_;
  core::Counter& failures_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool started_ = false, stopping_ = false;
  // The current connection (generation_ numbers them; a stale event is ignored).
  uint64_t generation_ = 0;
  TunnelConnectionPtr conn_;
  std::unique_ptr<SessionMux> mux_;
  bool open_ = false, ended_ = false;
  std::string endReason_, lastError_;
  size_t inflight_ = 0;
  std::chrono::steady_clock::time_point lastHeard_;
  uint64_t connectCount_ = 0;
};

}  // namespace

std::unique_ptr<Tunnel> Tunnel::make(TunnelOptions options, Dialer dialer, RuntimeStreams& streams,
                                     RelayFactory relays, core::MetricsRegistry& metrics,
                                     core::Logger log) {
  OUTPOST_CHECK(dialer != nullptr, "the stream tunnel needs a dialer");
  return std::make_unique<TunnelImpl>(options, std::move(dialer), streams, std::move(relays),
                                      metrics, std::move(log));
}

}  // namespace outpost::stream
