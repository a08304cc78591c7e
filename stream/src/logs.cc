// kubectl logs over the tunnel: the CRI log file of the container, as the kubelet serves it (the
// text of each line, partial entries joined; `timestamps` puts the entry's time first), with
// tailLines, sinceSeconds/sinceTime, limitBytes, previous and follow. A follow keeps reading as the
// file grows and, when the container is replaced by a new attempt (the runtime names another log
// file), goes on with the new file from its start; it ends when the pod is gone from the node.
#include <chrono>
#include <deque>
#include <fstream>

#include "outpost/stream/cri_log.h"
#include "session.h"

namespace outpost::stream {

namespace {

class LogStream {
 public:
  LogStream(Session& s, const LogOptions& o) : s_(s), o_(o) {
    if (o.sinceSeconds) {
      since_ = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count() -
               *o.sinceSeconds;
    } else if (o.sinceUnixSeconds) {
      since_ = *o.sinceUnixSeconds;
    }
    tailing_ = o.tailLines.has_value();
  }

  // False once the session ended or limitBytes was reached.
  bool ok() const { return ok_; }

  void line(const CriLogLine& l) {
    if (!ok_) return;
    if (since_ && !l.time.empty()) {
      long long t = rfc3339Seconds(l.time);
      if (t >= 0 && t < *since_) return;
    }
    std::string out;
    if (o_.timestamps && !l.time.empty()) out.append(l.time).push_back(' ');
    out.append(l.text).push_back('\n');
    if (tailing_) {
      if (*o_.tailLines == 0) return;
      tail_.push_back(std::move(out));
      if (static_cast<int64_t>(tail_.size()) > *o_.tailLines) tail_.pop_front();
      return;
    }
    emit(out);
  }

  // The first file was read: what tailLines kept goes out, and later lines go out as they come.
  void endTail() {
    if (!tailing_) return;
    tailing_ = false;
    for (auto& l : tail_) emit(l);
    tail_.clear();
  }

 private:
  void emit(std::string_view out) {
    if (!ok_) return;
    if (o_.limitBytes) {
      auto left = *o_.limitBytes - sent_;
      if (static_cast<int64_t>(out.size()) >= left) {
        out = out.substr(0, static_cast<size_t>(left));
        ok_ = false;
      }
    }
    sent_ += static_cast<int64_t>(out.size());
    if (!out.empty() && !s_.sendData(out)) ok_ = false;
  }

  Session& s_;
  const LogOptions& o_;
  std::optional<long long> since_;
  bool tailing_ = false;
  std::deque<std::string> tail_;
  int64_t sent_ = 0;
  bool ok_ = true;
};

// Reads what the file has beyond the stream's position; true when anything was read.
bool drain(std::ifstream& in, CriLogDecoder& decoder, const CriLogDecoder::Emit& emit) {
  char buf[16 * 1024];
  bool any = false;
  in.clear();
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    any = true;
    decoder.feed(std::string_view(buf, static_cast<size_t>(in.gcount())), emit);
  }
  in.clear();
  return any;
}

}  // namespace

void serveLogs(Session& s, const ConnectRequest& r, RuntimeStreams& streams) {
  const LogOptions& o = r.logs;
  auto log = streams.containerLog(r.ref, o.previous);
  if (!log.isOk()) return s.refuse(log.status(), false);
  LogStream out(s, o);
  CriLogDecoder decoder;
  CriLogDecoder::Emit emit = [&](const CriLogLine& l) { out.line(l); };
  std::ifstream in(log->path, std::ios::binary);
  if (!in) {
    return s.refuse(core::notFound("container " + r.ref.container + " of pod " + r.ref.ns + "/" +
                                   r.ref.pod + " has no log file yet"),
                    false);
  }
  drain(in, decoder, emit);
  if (!o.follow || o.previous) {
    decoder.flush(emit);
    out.endTail();
    return;
  }
  out.endTail();
  const auto poll = s.options().followPoll;
  int quiet = 0;
  while (out.ok() && s.wait(poll)) {
    if (drain(in, decoder, emit)) {
      quiet = 0;
      continue;
    }
    if (s.idle()) {
      s.metrics().idleClosed.inc();
      return;
    }
    if (++quiet % 4 != 0) continue;
    // Nothing new for a while: has the container been replaced, or the pod removed?
    auto now = streams.containerLog(r.ref, false);
    if (!now.isOk()) {
      if (now.status().code() == core::Code::kNotFound) break;
      continue;  // the runtime did not answer this time
    }
    if (now->path == log->path && now->containerId == log->containerId) continue;
    std::ifstream next(now->path, std::ios::binary);
    if (!next) continue;  // the new attempt has not written its file yet
    drain(in, decoder, emit);
    decoder.flush(emit);
    in = std::move(next);
    log = std::move(now);
    drain(in, decoder, emit);
  }
  decoder.flush(emit);
}

}  // namespace outpost::stream
