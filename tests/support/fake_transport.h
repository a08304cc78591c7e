#pragma once
// A Transport (cloudhub-client/src/session/transport.h) that the test scripts: it opens, fails or
// closes a connection when told, delivers the frames the test gives it, and keeps what the session
// sent. For unit tests of the cloud session without a broker or a CloudHub double;
// tests/cloudhub/fake_transport_test.cc shows the real MQTT transport behaves alike in what the
// session relies on.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "outpost/core/clock.h"
#include "session/transport.h"

namespace outpost::test {

class FakeTransport final : public cloudhub::Transport {
 public:
  // What a connect attempt does by itself; kManual leaves it pending until open() or fail().
  enum class OnConnect { kManual, kOpen, kFail };

  // `clock` stamps the attempts.
  explicit FakeTransport(core::Clock& clock, std::string endpoint = "fake://cloud")
      : clock_(clock), endpoint_(std::move(endpoint)) {}

  // ---- scripting (any thread)
  void setOnConnect(OnConnect what);
  // Ends the pending attempt: opened, or closed with `why`. False when no attempt is pending.
  bool open();
  bool fail(const std::string& why);
  // The open connection ends with `why`. False when none is open.
  bool closeWithReason(const std::string& why);
  // Delivers a frame (on `channel`) or a sign of life on the open connection.
  bool deliver(const std::string& payload, const std::string& channel = "");
  bool pong();
  // Called on the session's loop with each message sent, before its `done`; `done` gets what the
  // hook returns.
  void onSend(std::function<core::Status(const cloudhub::Outgoing&)> hook);

  // ---- observing (any thread)
  struct Attempt {
    core::MonoTime at;
    core::Duration deadline;
  };
  std::vector<Attempt> attempts() const;
  std::vector<cloudhub::Outgoing> sent() const;
  int closes() const;  // times the session gave a connection or attempt up
  bool isOpen() const;
  // Waits (real time, at most `timeout`) until `cond` holds on the transport's state.
  bool waitUntil(const std::function<bool(const FakeTransport&)>& cond,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // ---- cloudhub::Transport (the session's loop)
  const std::string& endpoint() const override { return endpoint_; }
  core::Status connect(core::Duration deadline, cloudhub::TransportEvents events) override;
  void send(cloudhub::Outgoing out, std::function<void(core::Status)> done) override;
  void close() override;
  void shutdown() override;

 private:
  enum class Phase { kIdle, kPending, kOpen };
  std::optional<cloudhub::TransportEvents> takeEvents(Phase from, Phase to);

  core::Clock& clock_;
  const std::string endpoint_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  OnConnect onConnect_ = OnConnect::kOpen;
  Phase phase_ = Phase::kIdle;
  cloudhub::TransportEvents events_;
  std::vector<Attempt> attempts_;
  std::vector<cloudhub::Outgoing> sent_;
  std::function<core::Status(const cloudhub::Outgoing&)> hook_;
  int closes_ = 0;
};

}  // namespace outpost::test
