#pragma once
// Container logs in the CRI format that containerd writes: one entry per line,
// "<RFC3339Nano time> <stdout|stderr> <P|F> <text>", where P marks a partial line that the next
// entries of the same stream continue until one tagged F ends it. Used by the stream tunnel's
// logs and by `outpostctl logs`.

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace outpost::stream {

// One whole log line: the time of its first entry, its stream, its text (no newline). A raw line
// that is not in the CRI format has no time or stream.
struct CriLogLine {
  std::string_view time;
  std::string_view stream;
  std::string_view text;
};

class CriLogDecoder {
 public:
  using Emit = std::function<void(const CriLogLine& line)>;

  // Feeds raw bytes from a log file; each complete log line goes to `emit`. A raw line that is not
  // in the CRI format is passed on as it is.
  void feed(std::string_view bytes, const Emit& emit);
  // Passes on what is still partial (the file ended, or a newer one replaces it).
  void flush(const Emit& emit);

 private:
  void entry(std::string_view raw, const Emit& emit);

  struct Partial {
    std::string time, text;
  };
  std::string raw_;                         // an incomplete raw line
  std::map<std::string, Partial> partial_;  // stream -> P entries so far
};

// Seconds since the epoch of an RFC 3339 time (fraction ignored; Z or +hh:mm); -1 when it is not.
long long rfc3339Seconds(std::string_view s);

}  // namespace outpost::stream
