// Unary gRPC over HTTP/2 (gRPC's PROTOCOL-HTTP2.md) on libnghttp2: a non-blocking unix socket,
// poll() for deadlines, nghttp2's in-memory send/receive. nghttp2 stays in this file and
// grpc_stream.cc (one call's response, as gRPC frames it).

#include "grpc_h2.h"

#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
#include <system_error>
#include <utility>

#include "grpc_stream.h"

namespace outpost::deploy::h2 {

using core::Code;
using core::Result;
using core::Status;

namespace {

constexpr const char* kUserAgent = "outpost-cri/1 (nghttp2)";
constexpr std::size_t kReadChunk = std::size_t{64} * 1024;

std::string errnoText(int e) { return std::error_code(e, std::generic_category()).message(); }

// Milliseconds until `deadline`, rounded up, for poll(); 0 once it has passed.
int pollTimeout(Deadline deadline) {
  auto left = deadline - std::chrono::steady_clock::now();
  if (left <= std::chrono::nanoseconds::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

// Up to 40 bytes of what the peer sent, printable, for "not HTTP/2" messages.
std::string excerpt(std::string_view bytes) {
  std::string out;
  for (char c : bytes.substr(0, 40)) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      auto u = static_cast<unsigned char>(c);
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

}  // namespace

// One HTTP/2 connection to the runtime; one call at a time.
class Connection {
 public:
  struct Outcome {
    Result<std::string> result;
    bool reusable = false;
    // Nothing reached the server's application (refused stream, request not written): safe to send
    // again on another connection.
    bool retryable = false;
  };

  static Result<std::unique_ptr<Connection>> open(const std::string& path,
                                                  const std::string& endpoint, Deadline deadline) {
    auto fail = [&](int e) {
      return Status(Code::kUnavailable, "connect " + endpoint + ": " + errnoText(e));
    };
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) {
      return Status(Code::kUnavailable, "connect " + endpoint + ": socket path too long");
    }
    std::memcpy(addr.sun_path, path.data(), path.size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(errno);
    auto c = std::unique_ptr<Connection>(new Connection(fd));
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (errno != EINPROGRESS) return fail(errno);
      pollfd p{fd, POLLOUT, 0};
      int n = ::poll(&p, 1, pollTimeout(deadline));
      if (n == 0) return Status(Code::kDeadlineExceeded, "connect " + endpoint + ": timed out");
      int err = 0;
      socklen_t len = sizeof(err);
      if (n < 0) return fail(errno);
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return fail(errno);
      if (err != 0) return fail(err);
    }
    OUTPOST_RETURN_IF_ERROR(c->startSession());
    return c;
  }

  ~Connection() {
    if (session_ != nullptr) nghttp2_session_del(session_);
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // For an idle pooled connection: reads what the runtime sent meanwhile (PING, SETTINGS, GOAWAY,
  // EOF) and says whether a call can still go on it.
  bool stillUsable() {
    while (!dead_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) break;
      if (!readSome()) break;
    }
    return !dead_ && !goaway_ && nghttp2_session_want_read(session_) != 0;
  }

  Outcome call(std::string_view path, std::string_view request, Deadline deadline) {
    Stream s;
    stream_ = &s;
    struct Reset {
      Connection* c;
      ~Reset() { c->stream_ = nullptr; }
    } reset{this};

    if (request.size() > UINT32_MAX) {
      return {Status(Code::kInvalidArgument, "request too large"), true, false};
    }
    auto size = static_cast<uint32_t>(request.size());
    s.request.reserve(5 + request.size());
    s.request += '\0';
    for (int shift = 24; shift >= 0; shift -= 8) s.request += static_cast<char>(size >> shift);
    s.request.append(request);

    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) {
      return {Status(Code::kDeadlineExceeded, "deadline exceeded before the call was sent"), true,
              false};
    }
    std::string timeout = grpcTimeout(left);
    auto nv = [](std::string_view name, std::string_view value) {
      return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                        reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                        value.size(), NGHTTP2_NV_FLAG_NONE};
    };
    const nghttp2_nv headers[] = {
        nv(":method", "POST"),
        nv(":scheme", "http"),
        nv(":path", path),
        nv(":authority", "localhost"),
        nv("content-type", "application/grpc"),
        nv("te", "trailers"),
        nv("grpc-timeout", timeout),
        nv("user-agent", kUserAgent),
    };
    nghttp2_data_provider body{};
    body.source.ptr = &s;
    body.read_callback = &Connection::readBody;
    s.id = nghttp2_submit_request(session_, nullptr, headers, std::size(headers), &body, nullptr);
    if (s.id < 0) {
      dead_ = true;
      return {Status(Code::kUnavailable,
                     std::string("cannot start a stream: ") + nghttp2_strerror(s.id)),
              false, s.id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE};
    }

    std::optional<Status> failure = pump(s, deadline);
    if (failure) {
      dead_ = true;
      // Resent elsewhere only when the runtime cannot have acted on it: part of the request never
      // left us. A call that may have run (RunPodSandbox) is never sent twice.
      bool retryable = s.resetCode == NGHTTP2_REFUSED_STREAM ||
                       (writeFailed_ && !s.delivered && !s.headersSeen && s.received == 0);
      return {std::move(*failure), false, retryable};
    }
    Result<std::string> result = s.finish();
    bool retryable = !result.isOk() && s.resetCode == NGHTTP2_REFUSED_STREAM && !s.headersSeen;
    // Only a proper gRPC answer leaves the connection fit for the next call; after anything odd
    // (a response refused mid-stream, a reset, a malformed answer) a fresh one is safer.
    bool reusable = s.wellFormed && !dead_ && !goaway_ && nghttp2_session_want_read(session_) != 0;
    // WINDOW_UPDATEs and the like; what the socket does not take now goes with the next call.
    if (reusable && !flush().isOk()) reusable = false;
    return {std::move(result), reusable && !writeFailed_, retryable};
  }

 private:
  explicit Connection(int fd) : fd_(fd) {}

  Status startSession() {
    nghttp2_session_callbacks* cb = nullptr;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
      return Status(Code::kResourceExhausted, "nghttp2: out of memory");
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, &Connection::onHeader);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Connection::onData);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Connection::onStreamClose);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Connection::onFrame);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, &Connection::onFrameSent);
    nghttp2_session_callbacks_set_error_callback2(cb, &Connection::onError);
    int rv = nghttp2_session_client_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) return Status(Code::kResourceExhausted, "nghttp2: out of memory");
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
    if (rv != 0) return Status(Code::kInternal, std::string("nghttp2: ") + nghttp2_strerror(rv));
    return Status::ok();
  }

  // Runs the connection until the stream closes; a transport failure or the deadline is returned.
  std::optional<Status> pump(Stream& s, Deadline deadline) {
    for (;;) {
      // Also after a failed write: nghttp2's queue must be drained (and dropped) for what it has
      // decided, a GOAWAY for a protocol error above all, to be seen (onFrameSent).
      if (auto st = flush(); !st.isOk()) return st;
      if (s.closed || s.refused) return std::nullopt;
      if (protocolError_) return protocolFailure();
      if (dead_) return closedFailure(s);
      if (nghttp2_session_want_read(session_) == 0) {
        // The session ended (GOAWAY sent or received) without closing our stream.
        return goaway_ ? Status(Code::kUnavailable, "the runtime closed the connection (GOAWAY)")
                       : protocolFailure();
      }
      int timeout = pollTimeout(deadline);
      if (timeout == 0) return deadlineFailure(s);
      pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() || writeFailed_ ? 0 : POLLOUT)), 0};
      int n = ::poll(&p, 1, timeout);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status(Code::kUnavailable, "poll: " + errnoText(errno));
      }
      if (n == 0) return deadlineFailure(s);
      // EOF, a read error or a protocol error marks the connection; the top of the loop reports it.
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) readSome();
    }
  }

  Status deadlineFailure(const Stream& s) const {
    return Status(Code::kDeadlineExceeded, std::string("deadline exceeded ") +
                                               (s.headersSeen ? "while the runtime was answering"
                                                              : "waiting for the runtime"));
  }

  Status closedFailure(const Stream& s) const {
    if (framesReceived_ == 0 && !firstBytes_.empty()) {
      return Status(Code::kUnavailable, "not HTTP/2: the runtime sent \"" + excerpt(firstBytes_) +
                                            "\" and closed the connection");
    }
    if (readErrno_ != 0 && readErrno_ != ECONNRESET) {
      return Status(Code::kUnavailable, "reading from the runtime: " + errnoText(readErrno_));
    }
    if (writeFailed_ && !s.headersSeen && firstBytes_.empty()) {
      return Status(Code::kUnavailable, "writing to the runtime: " + errnoText(writeErrno_));
    }
    return Status(Code::kUnavailable,
                  std::string("the runtime closed the connection ") +
                      (s.headersSeen ? "in the middle of the response" : "before answering"));
  }

  Status protocolFailure() const {
    std::string why = errorText_.empty() ? "the HTTP/2 session ended" : errorText_;
    if (framesReceived_ == 0) {
      return Status(Code::kUnavailable,
                    "not HTTP/2: the runtime sent \"" + excerpt(firstBytes_) + "\" (" + why + ")");
    }
    return Status(Code::kUnavailable, "bad HTTP/2 from the runtime: " + why);
  }

  // Moves what nghttp2 wants to send to the socket, as far as it takes it without blocking.
  Status flush() {
    for (;;) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        return Status(Code::kInternal,
                      std::string("nghttp2: ") + nghttp2_strerror(static_cast<int>(n)));
      }
      if (n == 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    if (writeFailed_) {  // the peer is gone: nothing more reaches it
      out_.clear();
      return Status::ok();
    }
    while (!out_.empty()) {
      ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        // The peer is gone. What it sent before going may still explain why: keep reading.
        writeFailed_ = true;
        writeErrno_ = errno;
        out_.clear();
        break;
      }
      out_.erase(0, static_cast<std::size_t>(n));
    }
    if (out_.empty() && !writeFailed_ && stream_ != nullptr &&
        stream_->sent == stream_->request.size()) {
      stream_->delivered = true;
    }
    return Status::ok();
  }

  // Reads once and hands the bytes to nghttp2. False on EOF, an error (readErrno_) or nothing to
  // read.
  bool readSome() {
    char buf[kReadChunk];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
      readErrno_ = errno;
      dead_ = true;
      return false;
    }
    if (n == 0) {
      dead_ = true;
      return false;
    }
    if (firstBytes_.size() < 40) {
      firstBytes_.append(
          buf, std::min<std::size_t>(static_cast<std::size_t>(n), 40 - firstBytes_.size()));
    }
    ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(buf),
                                          static_cast<std::size_t>(n));
    if (rv < 0) {
      if (errorText_.empty()) errorText_ = nghttp2_strerror(static_cast<int>(rv));
      protocolError_ = true;
      dead_ = true;
      return false;
    }
    if (!errorText_.empty() && nghttp2_session_want_read(session_) == 0) protocolError_ = true;
    return true;
  }

  static Connection* self(void* user) { return static_cast<Connection*>(user); }

  static ssize_t readBody(nghttp2_session*, int32_t, uint8_t* buf, std::size_t length,
                          uint32_t* flags, nghttp2_data_source* source, void*) {
    auto* s = static_cast<Stream*>(source->ptr);
    std::size_t n = std::min(length, s->request.size() - s->sent);
    // Bytes of a gRPC frame, not a C string: no terminator belongs there.
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
    std::memcpy(buf, s->request.data() + s->sent, n);
    s->sent += n;
    if (s->sent == s->request.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      std::size_t namelen, const uint8_t* value, std::size_t valuelen, uint8_t,
                      void* user) {
    Stream* s = self(user)->stream_;
    if (s == nullptr || frame->hd.stream_id != s->id) return 0;
    s->headersSeen = true;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int code = 0;
      std::from_chars(v.data(), v.data() + v.size(), code);
      s->httpStatus = code;
    } else if (n == "content-type") {
      s->contentType = v;
    } else if (n == "grpc-encoding") {
      s->encoding = v;
    } else if (n == "grpc-status") {
      s->grpcStatus = std::string(v);
    } else if (n == "grpc-message") {
      s->grpcMessage = v;
    }
    return 0;
  }

  static int onData(nghttp2_session*, uint8_t, int32_t streamId, const uint8_t* data,
                    std::size_t len, void* user) {
    Stream* s = self(user)->stream_;
    if (s != nullptr && streamId == s->id) s->feed(data, len);
    return 0;
  }

  static int onStreamClose(nghttp2_session*, int32_t streamId, uint32_t errorCode, void* user) {
    Stream* s = self(user)->stream_;
    if (s != nullptr && streamId == s->id) {
      s->closed = true;
      s->resetCode = errorCode;
    }
    return 0;
  }

  static int onFrame(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    Connection* c = self(user);
    ++c->framesReceived_;
    if (frame->hd.type == NGHTTP2_GOAWAY) c->goaway_ = true;
    return 0;
  }

  // A GOAWAY we send with an error code is nghttp2's verdict on what the runtime sent (a DATA
  // frame on stream 0, ...): a protocol error, whatever the socket does next. nghttp2 calls no
  // error callback for some of these, so the reason is taken from the GOAWAY's debug data.
  static int onFrameSent(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_GOAWAY || frame->goaway.error_code == NGHTTP2_NO_ERROR) return 0;
    Connection* c = self(user);
    if (c->errorText_.empty()) {
      const auto* data = reinterpret_cast<const char*>(frame->goaway.opaque_data);
      c->errorText_ = frame->goaway.opaque_data_len > 0
                          ? std::string(data, frame->goaway.opaque_data_len)
                          : nghttp2_http2_strerror(frame->goaway.error_code);
    }
    c->protocolError_ = true;
    return 0;
  }

  static int onError(nghttp2_session*, int, const char* msg, std::size_t len, void* user) {
    Connection* c = self(user);
    if (c->errorText_.empty()) c->errorText_.assign(msg, len);
    return 0;
  }

  int fd_;
  nghttp2_session* session_ = nullptr;
  Stream* stream_ = nullptr;
  std::string out_;  // bytes nghttp2 produced that the socket has not taken yet
  std::string firstBytes_;
  std::string errorText_;
  int framesReceived_ = 0;
  bool dead_ = false;
  bool goaway_ = false;
  bool protocolError_ = false;
  bool writeFailed_ = false;
  int writeErrno_ = 0;
  int readErrno_ = 0;
};

Channel::Channel(std::string endpoint, std::size_t maxIdle)
    : endpoint_(std::move(endpoint)), path_(socketPath(endpoint_)), maxIdle_(maxIdle) {
  if (endpoint_.find("://") == std::string::npos && endpoint_.rfind("unix:", 0) != 0) {
    endpoint_ = "unix://" + endpoint_;
  }
}

Channel::~Channel() = default;

std::size_t Channel::connectionsMade() const {
  std::lock_guard lock(mu_);
  return made_;
}

std::unique_ptr<Connection> Channel::takeIdle() {
  for (;;) {
    std::unique_ptr<Connection> c;
    {
      std::lock_guard lock(mu_);
      if (idle_.empty()) return nullptr;
      c = std::move(idle_.back());
      idle_.pop_back();
    }
    // The runtime may have closed it meanwhile (restarted): drop it and try the next.
    if (c->stillUsable()) return c;
  }
}

void Channel::giveBack(std::unique_ptr<Connection> c) {
  std::lock_guard lock(mu_);
  if (idle_.size() < maxIdle_) idle_.push_back(std::move(c));
}

Result<std::string> Channel::call(std::string_view path, std::string_view request,
                                  Deadline deadline) {
  if (path_.empty()) {
    return Status(Code::kInvalidArgument, "not a unix socket endpoint: " + endpoint_);
  }
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Connection> c = takeIdle();
    bool reused = c != nullptr;
    if (!c) {
      auto made = Connection::open(path_, endpoint_, deadline);
      if (!made.isOk()) return made.status();
      c = std::move(made).value();
      std::lock_guard lock(mu_);
      ++made_;
    }
    Connection::Outcome out = c->call(path, request, deadline);
    if (out.reusable) giveBack(std::move(c));
    // A pooled connection the runtime had already given up on: the request never reached it.
    if (!out.result.isOk() && out.retryable && reused && attempt < 2) continue;
    return std::move(out.result);
  }
}

}  // namespace outpost::deploy::h2
