#include "support/file_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace outpost::test {

class FileServer::Impl {
 public:
  Impl() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd_, 16) != 0)
      throw std::runtime_error("FileServer: cannot listen on loopback");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~Impl() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      handle(c);
      ::close(c);
    }
  }

  void handle(int c) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return;
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    size_t sp1 = req.find(' '), sp2 = req.find(' ', sp1 + 1);
    std::string path = req.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string range;
    if (auto r = req.find("\r\nRange: "); r != std::string::npos) {
      size_t start = r + 9;
      range = req.substr(start, req.find("\r\n", start) - start);
    }
    std::string body, location;
    std::optional<uint64_t> cut;
    bool ignoreRange = false, found = false;
    {
      std::lock_guard lock(mu_);
      ranges_.push_back(range);
      if (auto it = redirects_.find(path); it != redirects_.end()) location = it->second;
      if (auto it = files_.find(path); it != files_.end()) {
        body = it->second;
        found = true;
      }
      cut = cutNext_;
      cutNext_.reset();
      ignoreRange = ignoreRange_;
    }
    std::string head;
    uint64_t from = 0;
    if (!location.empty()) {
      head = "HTTP/1.1 302 Found\r\nLocation: " + location + "\r\nContent-Length: 0\r\n";
      body.clear();
    } else if (!found) {
      head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n";
    } else if (!range.empty() && !ignoreRange) {
      from = std::stoull(range.substr(6));  // "bytes=N-"
      if (from >= body.size()) {
        head = "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */" +
               std::to_string(body.size()) + "\r\nContent-Length: 0\r\n";
        body.clear();
        from = 0;
      } else {
        head = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(from) +
               "-" + std::to_string(body.size() - 1) + "/" + std::to_string(body.size()) +
               "\r\nContent-Length: " + std::to_string(body.size() - from) + "\r\n";
      }
    } else {
      head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    head += "Connection: close\r\n\r\n";
    std::string out = head + body.substr(from, cut ? *cut : std::string::npos);
    size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> files_, redirects_;
  std::optional<uint64_t> cutNext_;
  bool ignoreRange_ = false;
  std::vector<std::string> ranges_;
};

FileServer::FileServer() : impl_(std::make_unique<Impl>()) {}
FileServer::~FileServer() = default;
int FileServer::port() const { return impl_->port_; }
std::string FileServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(impl_->port_) + path;
}
void FileServer::put(const std::string& path, std::string body) {
  std::lock_guard lock(impl_->mu_);
  impl_->files_[path] = std::move(body);
}
void FileServer::cutNextAfter(uint64_t bytes) {
  std::lock_guard lock(impl_->mu_);
  impl_->cutNext_ = bytes;
}
void FileServer::setIgnoreRange(bool on) {
  std::lock_guard lock(impl_->mu_);
  impl_->ignoreRange_ = on;
}
void FileServer::redirect(const std::string& path, const std::string& location) {
  std::lock_guard lock(impl_->mu_);
  impl_->redirects_[path] = location;
}
std::vector<std::string> FileServer::ranges() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->ranges_;
}

}  // namespace outpost::test
