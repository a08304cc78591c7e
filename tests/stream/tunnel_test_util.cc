#include "tunnel_test_util.h"

#include "support/test_util.h"

namespace outpost::test {

using namespace stream;

class MemoryCloud::Conn final : public TunnelConnection {
 public:
  Conn(MemoryCloud& cloud, uint64_t gen) : cloud_(cloud), gen_(gen) {}
  void send(std::string message, std::function<void(bool)> done) override {
    auto m = decodeMessage(message);
    {
      std::lock_guard lock(cloud_.mu_);
      if (m.isOk()) {
        if (m->type == static_cast<uint64_t>(MessageType::kData)) {
          cloud_.data_[m->id] += m->data;
          cloud_.sizes_[m->id].push_back(m->data.size());
        } else if (m->type == static_cast<uint64_t>(MessageType::kRemoveConnect)) {
          cloud_.removed_[m->id] = true;
        }
      }
    }
    if (done) done(true);
  }
  void ping() override {}
  void close() override {}
  uint64_t gen() const { return gen_; }

 private:
  MemoryCloud& cloud_;
  uint64_t gen_;
};

Dialer MemoryCloud::dialer() {
  return [this](TunnelConnectionEvents events) -> core::Result<TunnelConnectionPtr> {
    std::shared_ptr<Conn> conn;
    {
      std::lock_guard lock(mu_);
      ++dials_;
      conn = std::make_shared<Conn>(*this, dials_);
      current_ = conn;
      events_ = events;
    }
    // Counted once the node was told, as a real connection's messages only follow its opening.
    events.opened();
    {
      std::lock_guard lock(mu_);
      ++opened_;
    }
    cv_.notify_all();
    return TunnelConnectionPtr(conn);
  };
}

bool MemoryCloud::waitConnected(uint64_t n) {
  return waitFor([&] {
    std::lock_guard lock(mu_);
    return opened_ >= n;
  });
}

void MemoryCloud::send(uint64_t id, MessageType type, const std::string& data) {
  TunnelConnectionEvents events;
  {
    std::lock_guard lock(mu_);
    events = events_;
  }
  events.message(encodeMessage(id, type, data));
}

void MemoryCloud::drop() {
  TunnelConnectionEvents events;
  {
    std::lock_guard lock(mu_);
    events = events_;
  }
  events.ended("dropped by the test");
}

std::string MemoryCloud::data(uint64_t id) {
  std::lock_guard lock(mu_);
  return data_[id];
}

bool MemoryCloud::removed(uint64_t id) {
  std::lock_guard lock(mu_);
  return removed_[id];
}

std::vector<size_t> MemoryCloud::dataSizes(uint64_t id) {
  std::lock_guard lock(mu_);
  return sizes_[id];
}

uint64_t MemoryCloud::dials() {
  std::lock_guard lock(mu_);
  return dials_;
}

void FileStreams::setLog(const std::string& key, const std::string& path, const std::string& id) {
  std::lock_guard lock(mu_);
  logs_[key] = {path, id};
}

void FileStreams::setMetrics(std::string text) {
  std::lock_guard lock(mu_);
  metrics_ = std::move(text);
}

void FileStreams::setExecUrl(std::string url) {
  std::lock_guard lock(mu_);
  execUrl_ = std::move(url);
}

std::vector<ExecParams> FileStreams::execs() {
  std::lock_guard lock(mu_);
  return execs_;
}

core::Result<ContainerLog> FileStreams::containerLog(const ContainerRef& ref, bool) {
  std::lock_guard lock(mu_);
  auto it = logs_.find(ref.ns + "/" + ref.pod + "/" + ref.container);
  if (it == logs_.end()) {
    return core::notFound("pod " + ref.ns + "/" + ref.pod + " is not on this node");
  }
  return it->second;
}

core::Result<std::string> FileStreams::execUrl(const ExecParams& params) {
  std::lock_guard lock(mu_);
  if (logs_.count(params.ref.ns + "/" + params.ref.pod + "/" + params.ref.container) == 0) {
    return core::notFound("pod " + params.ref.ns + "/" + params.ref.pod + " is not on this node");
  }
  execs_.push_back(params);
  return execUrl_;
}

core::Result<std::string> FileStreams::attachUrl(const AttachParams& params) {
  return execUrl({params.ref, {"attach"}, params.stdin, params.stdout, params.stderr, params.tty});
}

core::Result<std::string> FileStreams::resourceMetrics() {
  std::lock_guard lock(mu_);
  if (metrics_.empty()) return core::unavailable("no metrics");
  return metrics_;
}

RelayFactory EchoRelays::factory() {
  return [this](const std::string& url, const std::string&, const Headers&, RelayEmit emit,
                RelayDone done) -> core::Result<RelaySession> {
    {
      std::lock_guard lock(mu_);
      url_ = url;
      ++started_;
    }
    auto ended = std::make_shared<std::once_flag>();
    RelaySession s;
    s.write = [emit](std::string bytes) { emit("echo:" + bytes); };
    s.close = [this, done, ended] {
      std::call_once(*ended, [&] {
        {
          std::lock_guard lock(mu_);
          closed_ = true;
        }
        done("");
      });
    };
    return s;
  };
}

std::string EchoRelays::lastUrl() {
  std::lock_guard lock(mu_);
  return url_;
}

bool EchoRelays::closed() {
  std::lock_guard lock(mu_);
  return closed_;
}

size_t EchoRelays::started() {
  std::lock_guard lock(mu_);
  return started_;
}

}  // namespace outpost::test
