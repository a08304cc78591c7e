#include "outpost/core/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace outpost::core {

namespace {

// Writes the syslog priority of a line's level as "<N>", which journald reads off the stream.
class SyslogPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    int prio = 6;
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        prio = 7;
        break;
      case spdlog::level::info:
        prio = 6;
        break;
      case spdlog::level::warn:
        prio = 4;
        break;
      case spdlog::level::err:
        prio = 3;
        break;
      case spdlog::level::critical:
        prio = 2;
        break;
      default:
        break;
    }
    const char text[] = {'<', static_cast<char>('0' + prio), '>'};
    dest.append(text, text + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

spdlog::level::level_enum toSpd(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kCritical:
      return spdlog::level::critical;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

namespace detail {
// One sink shared by every module's logger; not registered in spdlog's global registry.
class LogBackend {
 public:
  explicit LogBackend(spdlog::sink_ptr sink) : sink_(std::move(sink)) {}
  void write(LogLevel level, const std::string& tag, const std::string& message) {
    spdlog::details::log_msg msg(spdlog::string_view_t(tag), toSpd(level),
                                 spdlog::string_view_t(message));
    sink_->log(msg);
    if (level >= LogLevel::kWarn) sink_->flush();
  }
  void flush() { sink_->flush(); }

 private:
  spdlog::sink_ptr sink_;
};
}  // namespace detail

std::optional<LogLevel> parseLogLevel(std::string_view text) {
  std::string t(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "trace") return LogLevel::kTrace;
  if (t == "debug") return LogLevel::kDebug;
  if (t == "info") return LogLevel::kInfo;
  if (t == "warn" || t == "warning") return LogLevel::kWarn;
  if (t == "error") return LogLevel::kError;
  if (t == "critical") return LogLevel::kCritical;
  if (t == "off") return LogLevel::kOff;
  return std::nullopt;
}

std::string_view logLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kCritical:
      return "critical";
    case LogLevel::kOff:
      return "off";
  }
  return "info";
}

std::string escapeControl(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void Logger::emit(LogLevel level, const std::string& message) const {
  // One record, one line: a value from outside (a route, a topic, a key) cannot forge a record.
  bool plain = std::none_of(message.begin(), message.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  });
  backend_->write(level, tag_, plain ? message : escapeControl(message));
}

Logging::Logging(Options options)
    : level_(std::make_shared<std::atomic<int>>(static_cast<int>(options.level))) {
  spdlog::sink_ptr sink;
  if (options.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
  }
  bool journald = options.journald.value_or(std::getenv("JOURNAL_STREAM") != nullptr);
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (journald) {
    formatter->add_flag<SyslogPriorityFlag>('*').set_pattern("%*[%n] %v");
  } else {
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e %L [%n] %v");
  }
  sink->set_formatter(std::move(formatter));
  sink->set_level(spdlog::level::trace);
  backend_ = std::make_shared<detail::LogBackend>(std::move(sink));
}

Logging::~Logging() { flush(); }

Logger Logging::get(std::string tag) const { return Logger(backend_, level_, std::move(tag)); }

void Logging::setLevel(LogLevel level) { level_->store(static_cast<int>(level)); }

LogLevel Logging::level() const { return static_cast<LogLevel>(level_->load()); }

void Logging::flush() { backend_->flush(); }

}  // namespace outpost::core
