#pragma once
// What the stream tunnel's tests drive it with: an in-memory cloud side of the connection (the
// messages the node sent, and a way to send it messages or end the connection), a RuntimeStreams
// over files in a temporary directory, and an echo relay.

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "outpost/stream/frame.h"
#include "outpost/stream/tunnel.h"

namespace outpost::test {

class MemoryCloud {
 public:
  stream::Dialer dialer();
  // Waits until the node has an open connection (the n-th since the start).
  bool waitConnected(uint64_t n = 1);
  // A message to the node on the current connection.
  void send(uint64_t id, stream::MessageType type, const std::string& data);
  // The connection ends under the node (the cloud went away).
  void drop();
  // Everything the node sent for session `id`: the Data bytes joined, and whether it ended.
  std::string data(uint64_t id);
  bool removed(uint64_t id);
  std::vector<size_t> dataSizes(uint64_t id);
  uint64_t dials();

 private:
  class Conn;
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Conn> current_;
  stream::TunnelConnectionEvents events_;
  uint64_t opened_ = 0, dials_ = 0;
  std::map<uint64_t, std::string> data_;
  std::map<uint64_t, std::vector<size_t>> sizes_;
  std::map<uint64_t, bool> removed_;
};

class FileStreams final : public stream::RuntimeStreams {
 public:
  // The container "ns/pod/container" logs to `path` (with `containerId`); others are NOT_FOUND.
  void setLog(const std::string& key, const std::string& path, const std::string& containerId);
  void setMetrics(std::string text);
  void setExecUrl(std::string url);
  std::vector<stream::ExecParams> execs();

  core::Result<stream::ContainerLog> containerLog(const stream::ContainerRef& ref,
                                                  bool previous) override;
  core::Result<std::string> execUrl(const stream::ExecParams& params) override;
  core::Result<std::string> attachUrl(const stream::AttachParams& params) override;
  core::Result<std::string> resourceMetrics() override;

 private:
  std::mutex mu_;
  std::map<std::string, stream::ContainerLog> logs_;
  std::string metrics_, execUrl_;
  std::vector<stream::ExecParams> execs_;
};

// A relay that answers every write with "echo:" + bytes, and records what it was started with.
class EchoRelays {
 public:
  stream::RelayFactory factory();
  std::string lastUrl();
  bool closed();
  size_t started();

 private:
  std::mutex mu_;
  std::string url_;
  bool closed_ = false;
  size_t started_ = 0;
};

}  // namespace outpost::test
