#pragma once
// A byte-counting TCP forwarder on loopback for the link benchmark: the link connects to it, it
// connects on to the broker, and it counts what passes each way (the TCP payload, i.e. MQTT or TLS
// bytes) and, from the kernel's TCP_INFO of the link-side socket, the segments each way (pure ACKs
// included) so IP-level bytes can be given too. One connection at a time.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace outpost::bench {

class LinkProxy {
 public:
  explicit LinkProxy(int targetPort);
  ~LinkProxy();
  LinkProxy(const LinkProxy&) = delete;
  LinkProxy& operator=(const LinkProxy&) = delete;

  int port() const { return port_; }

  struct Counters {
    uint64_t upBytes = 0;    // link -> broker, TCP payload
    uint64_t downBytes = 0;  // broker -> link, TCP payload
    uint64_t upSegments = 0;
    uint64_t downSegments = 0;
    uint64_t upReads = 0;    // chunks read from the link: one per burst the link wrote
    int ipHeaderBytes = 52;  // IPv4 + TCP header of one segment (with the timestamps option)
    uint64_t upIpBytes() const { return upBytes + upSegments * ipHeaderBytes; }
    uint64_t downIpBytes() const { return downBytes + downSegments * ipHeaderBytes; }
  };
  Counters snapshot();
  static Counters diff(const Counters& later, const Counters& earlier);
  // When each chunk from the link was read (the first 10 000): an idle link's keepalive pings.
  std::vector<std::chrono::steady_clock::time_point> upReadTimes();

 private:
  void run();
  void closeConnection();
  void readTcpInfo(int fd, uint64_t& segsIn, uint64_t& segsOut, int& header);

  int listenFd_ = -1;
  int port_ = 0;
  int targetPort_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> up_{0}, down_{0}, upReads_{0};
  std::mutex mu_;
  int clientFd_ = -1;                               // the accepted connection (the link's side)
  int serverFd_ = -1;                               // our connection to the broker
  uint64_t closedSegsUp_ = 0, closedSegsDown_ = 0;  // from connections already closed
  std::vector<std::chrono::steady_clock::time_point> upReadTimes_;
  int header_ = 52;
  std::thread thread_;
};

}  // namespace outpost::bench
