#include "support/fake_transport.h"

namespace outpost::test {

void FakeTransport::setOnConnect(OnConnect what) {
  std::lock_guard lock(mu_);
  onConnect_ = what;
}

// The events of the connection when it is in phase `from`, which moves to `to`.
std::optional<cloudhub::TransportEvents> FakeTransport::takeEvents(Phase from, Phase to) {
  std::lock_guard lock(mu_);
  if (phase_ != from) return std::nullopt;
  phase_ = to;
  cv_.notify_all();
  return events_;
}

bool FakeTransport::open() {
  auto ev = takeEvents(Phase::kPending, Phase::kOpen);
  if (!ev) return false;
  ev->opened();
  return true;
}

bool FakeTransport::fail(const std::string& why) {
  auto ev = takeEvents(Phase::kPending, Phase::kIdle);
  if (!ev) return false;
  ev->closed(why);
  return true;
}

bool FakeTransport::closeWithReason(const std::string& why) {
  auto ev = takeEvents(Phase::kOpen, Phase::kIdle);
  if (!ev) return false;
  ev->closed(why);
  return true;
}

bool FakeTransport::deliver(const std::string& payload, const std::string& channel) {
  auto ev = takeEvents(Phase::kOpen, Phase::kOpen);
  if (!ev) return false;
  ev->frame(cloudhub::Incoming{channel, payload, 0});
  return true;
}

bool FakeTransport::pong() {
  auto ev = takeEvents(Phase::kOpen, Phase::kOpen);
  if (!ev) return false;
  if (ev->heard) ev->heard();
  return true;
}

void FakeTransport::onSend(std::function<core::Status(const cloudhub::Outgoing&)> hook) {
  std::lock_guard lock(mu_);
  hook_ = std::move(hook);
}

std::vector<FakeTransport::Attempt> FakeTransport::attempts() const {
  std::lock_guard lock(mu_);
  return attempts_;
}

std::vector<cloudhub::Outgoing> FakeTransport::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

int FakeTransport::closes() const {
  std::lock_guard lock(mu_);
  return closes_;
}

bool FakeTransport::isOpen() const {
  std::lock_guard lock(mu_);
  return phase_ == Phase::kOpen;
}

bool FakeTransport::waitUntil(const std::function<bool(const FakeTransport&)>& cond,
                              std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  while (true) {
    lock.unlock();
    bool ok = cond(*this);
    lock.lock();
    if (ok) return true;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      lock.unlock();
      return cond(*this);
    }
  }
}

core::Status FakeTransport::connect(core::Duration deadline, cloudhub::TransportEvents events) {
  OnConnect what;
  {
    std::lock_guard lock(mu_);
    events_ = std::move(events);
    phase_ = Phase::kPending;
    attempts_.push_back({clock_.now(), deadline});
    what = onConnect_;
    cv_.notify_all();
  }
  if (what == OnConnect::kOpen) open();
  if (what == OnConnect::kFail) fail("connection refused (scripted)");
  return core::okStatus();
}

void FakeTransport::send(cloudhub::Outgoing out, std::function<void(core::Status)> done) {
  std::function<core::Status(const cloudhub::Outgoing&)> hook;
  {
    std::lock_guard lock(mu_);
    if (phase_ != Phase::kOpen) {
      if (done) done(core::unavailable("not connected"));
      return;
    }
    hook = hook_;
  }
  core::Status s = hook ? hook(out) : core::okStatus();
  {
    std::lock_guard lock(mu_);
    if (s.isOk()) sent_.push_back(out);
    cv_.notify_all();
  }
  if (done) done(s);
}

void FakeTransport::close() {
  std::lock_guard lock(mu_);
  ++closes_;
  phase_ = Phase::kIdle;
  cv_.notify_all();
}

void FakeTransport::shutdown() { close(); }

}  // namespace outpost::test
