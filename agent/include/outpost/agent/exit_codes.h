#pragma once
// Exit codes of outpostd and outpostctl (documented in docs/operations.md). systemd's unit does not
// restart on kExitConfig: a bad configuration will not fix itself.

namespace outpost::agent {

inline constexpr int kExitOk = 0;  // stopped cleanly / command succeeded
inline constexpr int kExitFailure =
    1;  // outpostctl: the request failed (the agent answered an error)
inline constexpr int kExitNotFound =
    2;  // outpostctl: the named object, container, twin or log does not exist
inline constexpr int kExitUsage = 64;  // EX_USAGE: bad command line
inline constexpr int kExitUnavailable =
    69;  // EX_UNAVAILABLE: a module could not start / agent unreachable
inline constexpr int kExitBusy =
    75;  // EX_TEMPFAIL: outpostctl rollout: another controller drives it
inline constexpr int kExitSoftware = 70;  // EX_SOFTWARE: stop deadline exceeded, internal error
inline constexpr int kExitConfig = 78;    // EX_CONFIG: the configuration is invalid

}  // namespace outpost::agent
