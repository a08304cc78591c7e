#include "link_proxy.h"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace outpost::bench {

namespace {

sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

void noDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool writeAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

LinkProxy::LinkProxy(int targetPort) : targetPort_(targetPort) {
  listenFd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = loopback(0);
  if (listenFd_ < 0 || bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listenFd_, 4) != 0) {
    if (listenFd_ >= 0) close(listenFd_);
    throw std::runtime_error("proxy: cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { run(); });
}

LinkProxy::~LinkProxy() {
  stop_ = true;
  thread_.join();
  closeConnection();
  close(listenFd_);
}

void LinkProxy::readTcpInfo(int fd, uint64_t& segsIn, uint64_t& segsOut, int& header) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return;
  segsIn = ti.tcpi_segs_in;
  segsOut = ti.tcpi_segs_out;
  header = 20 + 20 + ((ti.tcpi_options & TCPI_OPT_TIMESTAMPS) ? 12 : 0);
}

void LinkProxy::closeConnection() {
  std::lock_guard lock(mu_);
  if (clientFd_ >= 0) {
    uint64_t in = 0, out = 0;
    readTcpInfo(clientFd_, in, out, header_);
    closedSegsUp_ += in;
    closedSegsDown_ += out;
    close(clientFd_);
  }
  if (serverFd_ >= 0) close(serverFd_);
  clientFd_ = serverFd_ = -1;
}

LinkProxy::Counters LinkProxy::snapshot() {
  Counters c;
  std::lock_guard lock(mu_);
  c.upSegments = closedSegsUp_;
  c.downSegments = closedSegsDown_;
  if (clientFd_ >= 0) {
    uint64_t in = 0, out = 0;
    readTcpInfo(clientFd_, in, out, header_);
    c.upSegments += in;
    c.downSegments += out;
  }
  c.ipHeaderBytes = header_;
  c.upBytes = up_;
  c.downBytes = down_;
  c.upReads = upReads_;
  return c;
}

std::vector<std::chrono::steady_clock::time_point> LinkProxy::upReadTimes() {
  std::lock_guard lock(mu_);
  return upReadTimes_;
}

LinkProxy::Counters LinkProxy::diff(const Counters& later, const Counters& earlier) {
  Counters d;
  d.upBytes = later.upBytes - earlier.upBytes;
  d.downBytes = later.downBytes - earlier.downBytes;
  d.upSegments = later.upSegments - earlier.upSegments;
  d.downSegments = later.downSegments - earlier.downSegments;
  d.upReads = later.upReads - earlier.upReads;
  d.ipHeaderBytes = later.ipHeaderBytes;
  return d;
}

void LinkProxy::run() {
  char buf[65536];
  while (!stop_) {
    int client = -1, server = -1;
    {
      std::lock_guard lock(mu_);
      client = clientFd_;
      server = serverFd_;
    }
    if (client < 0) {
      pollfd p{listenFd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      int c = accept(listenFd_, nullptr, nullptr);
      if (c < 0) continue;
      int s = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr = loopback(targetPort_);
      if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        if (s >= 0) close(s);
        close(c);
        continue;
      }
      noDelay(c);
      noDelay(s);
      std::lock_guard lock(mu_);
      clientFd_ = c;
      serverFd_ = s;
      continue;
    }
    pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    if (poll(p, 2, 100) <= 0) continue;
    bool closed = false;
    for (int i = 0; i < 2 && !closed; ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::recv(p[i].fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !writeAll(i == 0 ? server : client, buf, static_cast<size_t>(n))) {
        closed = true;
        break;
      }
      if (i == 0) {
        up_ += static_cast<uint64_t>(n);
        ++upReads_;
        std::lock_guard lock(mu_);
        if (upReadTimes_.size() < 10000) upReadTimes_.push_back(std::chrono::steady_clock::now());
      } else {
        down_ += static_cast<uint64_t>(n);
      }
    }
    if (closed) closeConnection();
  }
}

}  // namespace outpost::bench
