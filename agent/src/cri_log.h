#pragma once
// Container logs in the CRI format that containerd writes: one entry per line,
// "<RFC3339Nano time> <stdout|stderr> <P|F> <text>", where P marks a partial line that the next
// entries of the same stream continue until one tagged F ends it.

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace outpost::agent {

class CriLogDecoder {
 public:
  using Emit = std::function<void(std::string_view line)>;

  // Feeds raw bytes from a log file; each complete log line (its text, without the newline) goes
  // to `emit`. A raw line that is not in the CRI format is passed on as it is.
  void feed(std::string_view bytes, const Emit& emit);
  // Passes on what is still partial (the file ended, or a newer one replaces it).
  void flush(const Emit& emit);

 private:
  void entry(std::string_view raw, const Emit& emit);

  std::string raw_;                             // an incomplete raw line
  std::map<std::string, std::string> partial_;  // stream -> text of P entries so far
};

}  // namespace outpost::agent
