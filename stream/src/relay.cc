// UpgradeRelay over Boost.Asio: one io_context and one thread per session (exec and attach sessions
// are few and long; a thread each keeps one slow runtime from holding up another session).

#include "outpost/stream/relay.h"

#include <array>
#include <boost/asio.hpp>
#include <deque>
#include <mutex>
#include <thread>

namespace outpost::stream {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class UpgradeRelay::Impl : public std::enable_shared_from_this<UpgradeRelay::Impl> {
 public:
  Impl(Emit emit, Done done) : socket_(io_), emit_(std::move(emit)), done_(std::move(done)) {}

  core::Status connect(const RuntimeUrl& url, const std::string& request) {
    boost::system::error_code ec;
    std::string host = url.host == "[::1]" ? "::1" : url.host;
    auto address = asio::ip::make_address(host, ec);
    if (!ec) socket_.connect(tcp::endpoint(address, url.port), ec);
    if (ec) {
      return core::unavailable("the runtime's streaming server at " + url.host + ":" +
                               std::to_string(url.port) + " does not answer: " + ec.message());
    }
    socket_.set_option(tcp::no_delay(true), ec);
    pending_.push_back(request);
    pendingBytes_ = request.size();
    return core::okStatus();
  }

  void run() {
    // The thread shares the ownership: when the relay's last owner lets go inside Emit or Done,
    // this object lives on until the thread is out of it.
    thread_ = std::thread([self = shared_from_this()] {
      self->flush();
      self->read();
      self->io_.run();
    });
  }

  void write(std::string bytes) {
    if (bytes.empty()) return;
    {
      std::lock_guard lock(mu_);
      if (ended_) return;
      pendingBytes_ += bytes.size();
      if (pendingBytes_ > kMaxPendingBytes) {
        overflow_ = true;
      } else {
        pending_.push_back(std::move(bytes));
      }
    }
    asio::post(io_, [this] {
      if (overflowed()) {
        finish("the runtime does not read what the cloud sends: more than 1 MiB waits for it");
        return;
      }
      flush();
    });
  }

  void close() {
    asio::post(io_, [this] { finish(""); });
  }

  // Called by the destructor: ends the session and waits for the thread.
  void shutdown() {
    close();
    if (!thread_.joinable()) return;
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // the last owner went inside Emit or Done: the thread ends by itself
    } else {
      thread_.join();
    }
  }

 private:
  bool overflowed() {
    std::lock_guard lock(mu_);
    return overflow_;
  }

  void flush() {
    if (writing_ || finished_) return;
    {
      std::lock_guard lock(mu_);
      if (pending_.empty()) return;
      out_.clear();
      for (auto& b : pending_) out_ += b;
      pending_.clear();
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_), [this](boost::system::error_code ec, size_t n) {
      writing_ = false;
      {
        std::lock_guard lock(mu_);
        pendingBytes_ -= n;
      }
      if (ec) {
        finish("writing to the runtime's streaming server: " + ec.message());
        return;
      }
      flush();
    });
  }

  void read() {
    socket_.async_read_some(asio::buffer(in_), [this](boost::system::error_code ec, size_t n) {
      if (finished_) return;
      if (n > 0) emit_(std::string(in_.data(), n));
      if (ec == asio::error::eof) {
        finish("");
        return;
      }
      if (ec) {
        finish("reading from the runtime's streaming server: " + ec.message());
        return;
      }
      read();
    });
  }

  // Ends the session once: the socket closes, the io_context runs out of work, Done is called.
  void finish(const std::string& reason) {
    if (finished_) return;
    finished_ = true;
    {
      std::lock_guard lock(mu_);
      ended_ = true;
      pending_.clear();
    }
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    Done done = std::move(done_);
    emit_ = nullptr;
    if (done) done(reason);
  }

  asio::io_context io_;
  tcp::socket socket_;
  Emit emit_;
  Done done_;
  std::thread thread_;
  std::array<char, size_t{32} * 1024> in_{};
  std::string out_;        // being written (relay thread only)
  bool writing_ = false;   // relay thread only
  bool finished_ = false;  // relay thread only
  std::mutex mu_;          // guards what write() shares with the relay thread
  std::deque<std::string> pending_;
  size_t pendingBytes_ = 0;
  bool overflow_ = false;
  bool ended_ = false;
};

UpgradeRelay::UpgradeRelay(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

UpgradeRelay::~UpgradeRelay() { impl_->shutdown(); }

core::Result<std::shared_ptr<UpgradeRelay>> UpgradeRelay::start(
    const std::string& runtimeUrl, const std::string& method,
    const std::vector<std::pair<std::string, std::string>>& headers, Emit emit, Done done) {
  OUTPOST_ASSIGN_OR_RETURN(RuntimeUrl url, parseRuntimeUrl(runtimeUrl));
  OUTPOST_ASSIGN_OR_RETURN(std::string request, upgradeRequest(url, method, headers));
  auto impl = std::make_shared<Impl>(std::move(emit), std::move(done));
  OUTPOST_RETURN_IF_ERROR(impl->connect(url, request));
  impl->run();
  return std::shared_ptr<UpgradeRelay>(new UpgradeRelay(std::move(impl)));
}

void UpgradeRelay::write(std::string bytes) { impl_->write(std::move(bytes)); }
void UpgradeRelay::close() { impl_->close(); }

}  // namespace outpost::stream
