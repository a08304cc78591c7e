#pragma once
// Maintenance windows (node.maintenance_windows, docs/rollouts.md): when updates and deletions of
// pods that ask for it (annotation outpost.io/update-policy: maintenance-window) may happen.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/clock.h"
#include "outpost/core/status.h"

namespace outpost::deploy {

// The pod annotation and its value that make a running pod's updates wait for a window.
inline constexpr const char* kUpdatePolicyAnnotation = "outpost.io/update-policy";
inline constexpr const char* kMaintenanceWindowPolicy = "maintenance-window";

// One window: days of the week and, optionally, a time of day range in node local time. A range
// that ends at or before its start crosses midnight and belongs to the day it starts.
struct MaintenanceWindow {
  std::string text;  // as configured
  uint8_t days = 0;  // bit 0 Monday ... bit 6 Sunday
  bool wholeDay = true;
  int startMinute = 0;  // minutes after local midnight
  int endMinute = 0;
};

// "Mon-Sat 22:00-06:00", "Sun", "Mon,Wed 01:00-03:30": days Mon..Sun, ranges (Fri-Mon wraps),
// comma lists, then an optional HH:MM-HH:MM. INVALID_ARGUMENT saying what is wrong.
core::Result<MaintenanceWindow> parseMaintenanceWindow(std::string_view text);

// Where `now` stands against `windows`, in the node's local time zone (TZ).
struct WindowState {
  bool open = false;
  std::optional<core::WallTime> nextOpen;  // when closed: the next window's start
};
WindowState windowState(const std::vector<MaintenanceWindow>& windows, core::WallTime now);

}  // namespace outpost::deploy
