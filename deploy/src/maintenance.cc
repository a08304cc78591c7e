// Maintenance windows: parsing and where a time stands against them, in node local time.

#include "outpost/deploy/maintenance.h"

#include <array>
#include <ctime>

namespace outpost::deploy {
namespace {

constexpr std::array<std::string_view, 7> kDays = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

core::Status bad(std::string_view text, const std::string& why) {
  return core::invalidArgument("\"" + std::string(text) + "\": " + why);
}

std::optional<int> dayIndex(std::string_view d) {
  for (size_t i = 0; i < kDays.size(); ++i) {
    if (kDays[i] == d) return static_cast<int>(i);
  }
  return std::nullopt;
}

// "HH:MM" -> minutes after midnight.
std::optional<int> minuteOf(std::string_view t) {
  if (t.size() != 5 || t[2] != ':') return std::nullopt;
  for (size_t i : {0, 1, 3, 4}) {
    if (t[i] < '0' || t[i] > '9') return std::nullopt;
  }
  int h = (t[0] - '0') * 10 + (t[1] - '0');
  int m = (t[3] - '0') * 10 + (t[4] - '0');
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

// Local midnight of the day `offset` days from `base` (a local date), plus `minutes`; mktime
// places a time the clock skips (a DST gap) after the gap.
std::time_t localTime(const std::tm& base, int offset, int minutes, int* wday) {
  std::tm t{};
  t.tm_year = base.tm_year;
  t.tm_mon = base.tm_mon;
  t.tm_mday = base.tm_mday + offset + minutes / (24 * 60);
  t.tm_hour = (minutes % (24 * 60)) / 60;
  t.tm_min = minutes % 60;
  t.tm_isdst = -1;
  std::time_t at = std::mktime(&t);
  if (wday) *wday = (t.tm_wday + 6) % 7;  // Monday 0
  return at;
}

}  // namespace

core::Result<MaintenanceWindow> parseMaintenanceWindow(std::string_view text) {
  MaintenanceWindow w;
  w.text = std::string(text);
  std::string_view days = text;
  std::string_view times;
  if (auto sp = text.find(' '); sp != std::string_view::npos) {
    days = text.substr(0, sp);
    times = text.substr(sp + 1);
    if (times.empty() || times.find(' ') != std::string_view::npos)
      return bad(text, "expected days, then one time range HH:MM-HH:MM");
  }
  if (days.empty()) return bad(text, "no days (Mon, Tue, Wed, Thu, Fri, Sat, Sun)");
  while (!days.empty()) {
    auto comma = days.find(',');
    std::string_view item = days.substr(0, comma);
    days = comma == std::string_view::npos ? std::string_view() : days.substr(comma + 1);
    if (comma != std::string_view::npos && days.empty()) return bad(text, "a list ends with ','");
    auto dash = item.find('-');
    auto first = dayIndex(item.substr(0, dash));
    auto last = dash == std::string_view::npos ? first : dayIndex(item.substr(dash + 1));
    if (!first || !last) {
      return bad(text, "\"" + std::string(item) +
                           "\" is not a day or day range (Mon, Tue, Wed, Thu, Fri, Sat, Sun)");
    }
    for (int d = *first;; d = (d + 1) % 7) {
      w.days |= static_cast<uint8_t>(1u << d);
      if (d == *last) break;
    }
  }
  if (!times.empty()) {
    auto dash = times.find('-');
    auto start = minuteOf(times.substr(0, dash));
    auto end = dash == std::string_view::npos ? std::nullopt : minuteOf(times.substr(dash + 1));
    if (!start || !end)
      return bad(text, "\"" + std::string(times) + "\" is not a time range HH:MM-HH:MM");
    if (*start == *end) return bad(text, "the time range is empty (it starts where it ends)");
    w.wholeDay = false;
    w.startMinute = *start;
    w.endMinute = *end;
  }
  return w;
}

WindowState windowState(const std::vector<MaintenanceWindow>& windows, core::WallTime now) {
  WindowState out;
  std::time_t t = core::WallTime::clock::to_time_t(now);
  std::tm today{};
  localtime_r(&t, &today);
  // A window of yesterday may still be open (it crosses midnight); the next start is within a week.
  for (int offset = -1; offset <= 7; ++offset) {
    for (const auto& w : windows) {
      int wday = 0;
      int startMinute = w.wholeDay ? 0 : w.startMinute;
      std::time_t start = localTime(today, offset, startMinute, &wday);
      if (!(w.days & (1u << wday))) continue;
      int endMinute = w.wholeDay                    ? 24 * 60
                      : w.endMinute > w.startMinute ? w.endMinute
                                                    : 24 * 60 + w.endMinute;
      std::time_t end = localTime(today, offset, endMinute, nullptr);
      auto startAt = core::WallTime::clock::from_time_t(start);
      auto endAt = core::WallTime::clock::from_time_t(end);
      if (startAt <= now && now < endAt) out.open = true;
      if (startAt > now && (!out.nextOpen || startAt < *out.nextOpen)) out.nextOpen = startAt;
    }
  }
  if (out.open) out.nextOpen.reset();
  return out;
}

}  // namespace outpost::deploy
