#pragma once
// Logging: one tagged Logger per module, all writing to stderr through one Logging object made by
// main.

#include <atomic>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace outpost::core {

enum class LogLevel { kTrace = 0, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// Parses "trace", "debug", "info", "warn", "error", "critical", "off" (case-insensitive).
std::optional<LogLevel> parseLogLevel(std::string_view text);
std::string_view logLevelName(LogLevel level);

namespace detail {
class LogBackend;  // wraps the logging library; defined in log.cc
}

// A module's logger. Cheap to copy. Arguments are concatenated (operator<<) only when the level is
// on:
//   log.info("stored ", n, " objects in ", ms, " ms");
// `s` with control characters escaped (\n, \r, \t, \xNN for the rest): what a log record quotes
// from outside cannot start a line of its own or send terminal escapes. Every record passes here.
std::string escapeControl(std::string_view s);

class Logger {
 public:
  Logger() = default;  // a logger that writes nothing

  template <typename... Args>
  void trace(const Args&... args) const {
    write(LogLevel::kTrace, args...);
  }
  template <typename... Args>
  void debug(const Args&... args) const {
    write(LogLevel::kDebug, args...);
  }
  template <typename... Args>
  void info(const Args&... args) const {
    write(LogLevel::kInfo, args...);
  }
  template <typename... Args>
  void warn(const Args&... args) const {
    write(LogLevel::kWarn, args...);
  }
  template <typename... Args>
  void error(const Args&... args) const {
    write(LogLevel::kError, args...);
  }
  template <typename... Args>
  void critical(const Args&... args) const {
    write(LogLevel::kCritical, args...);
  }

  bool enabled(LogLevel level) const {
    return backend_ && static_cast<int>(level) >= level_->load(std::memory_order_relaxed);
  }
  const std::string& tag() const { return tag_; }

 private:
  friend class Logging;
  Logger(std::shared_ptr<detail::LogBackend> backend, std::shared_ptr<std::atomic<int>> level,
         std::string tag)
      : backend_(std::move(backend)), level_(std::move(level)), tag_(std::move(tag)) {}

  template <typename... Args>
  void write(LogLevel level, const Args&... args) const {
    if (!enabled(level)) return;
    std::ostringstream out;
    (out << ... << args);
    emit(level, out.str());
  }
  void emit(LogLevel level, const std::string& message) const;

  std::shared_ptr<detail::LogBackend> backend_;
  std::shared_ptr<std::atomic<int>> level_;
  std::string tag_;
};

// Owns the log output. Made once by main and handed to every module by reference.
class Logging {
 public:
  struct Options {
    LogLevel level = LogLevel::kInfo;
    // Journald mode: no timestamps, and a syslog priority prefix ("<6>") on each line so journald
    // keeps levels. nullopt decides from the environment (JOURNAL_STREAM set means stderr goes to
    // the journal).
    std::optional<bool> journald;
    // Where lines go; empty means stderr. Tests point it at a file.
    std::string file;
  };
  explicit Logging(Options options);
  Logging() : Logging(Options{}) {}
  ~Logging();

  // A logger whose lines carry `tag`, e.g. "metadb".
  Logger get(std::string tag) const;
  // Changes the level of every logger from this object at once (SIGHUP re-reads it).
  void setLevel(LogLevel level);
  LogLevel level() const;
  // Writes out anything buffered.
  void flush();

 private:
  std::shared_ptr<detail::LogBackend> backend_;
  std::shared_ptr<std::atomic<int>> level_;
};

}  // namespace outpost::core
