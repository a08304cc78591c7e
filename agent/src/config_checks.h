#pragma once
// Checks of the configuration kept apart from the schema (config_checks.cc).

#include <initializer_list>
#include <optional>
#include <string>

#include "outpost/agent/config.h"

namespace outpost::agent::detail {

// A message, or nothing when the value is fine.
using Problem = std::optional<std::string>;

// "host:port" to listen on: an IP address ("[::1]" for IPv6) and a port from 0 to 65535.
Problem listenAddressProblem(const std::string& text);
// scheme://host[:port][/path]: one of `schemes`, a usable host (an IPv4 address that parses, an
// IPv6 address in brackets, a DNS name) and a port from 1 to 65535.
Problem uriProblem(const std::string& uri, std::initializer_list<const char*> schemes);
// The local API's limits and socket group (api.max_connections, idle_timeout, header_timeout,
// socket_group).
void validateLimits(const Config& c, ConfigErrors& errs);
// The in-band upgrade's keys (upgrade.*): the trusted keys must be Ed25519 public keys.
void validateUpgrade(const Config& c, ConfigErrors& errs);
// The stream tunnel (cloud.websocket.stream_server, stream.*).
void validateStream(const Config& c, ConfigErrors& errs);
// The text of the configuration file at `path`, or why it cannot be one: only a regular file of at
// most kMaxConfigBytes is read (a directory, /dev/zero or a FIFO is refused at once, never read).
Problem readConfigText(const std::string& path, std::string& out);

}  // namespace outpost::agent::detail
