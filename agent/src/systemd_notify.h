#pragma once
// The two pieces of systemd's service protocol outpostd uses, without linking libsystemd (which
// brings libgcrypt, liblzma, libzstd, liblz4 and libcap into the process for two datagrams):
// sd_notify(3) and sd_watchdog_enabled(3), as documented there.

#include <chrono>
#include <optional>
#include <string>

namespace outpost::agent {

// Sends `state` ("READY=1", "STATUS=...", "WATCHDOG=1", several separated by newlines) to the
// service manager's NOTIFY_SOCKET (a path, or an abstract name starting with '@'). Returns false
// when there is no such socket (not started by systemd) or the send failed.
bool notifySystemd(const std::string& state);

// The watchdog period systemd expects (WATCHDOG_USEC), when it is enabled for this process
// (WATCHDOG_PID unset or ours).
std::optional<std::chrono::microseconds> systemdWatchdog();

}  // namespace outpost::agent
