// Checks of the configuration kept apart from the schema: addresses and ports, the local API's
// limits, and reading the file itself.

#include "config_checks.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <regex>
#include <vector>

#include "outpost/cloudhub/certificates.h"
#include "outpost/upgrade/verify.h"

namespace outpost::agent::detail {

namespace {

// An IPv4 address in dotted form, an IPv6 address, or a DNS name. Empty when `host` is one.
std::string hostProblem(const std::string& host) {
  if (host.empty()) return "has no host";
  if (host.front() == '[') {
    in6_addr a6{};
    if (host.back() != ']' ||
        inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6) != 1)
      return "host \"" + host + "\" is not an IPv6 address in brackets";
    return "";
  }
  bool dotted = std::all_of(host.begin(), host.end(),
                            [](unsigned char ch) { return std::isdigit(ch) || ch == '.'; });
  if (dotted) {
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1)
      return "host \"" + host + "\" is not an IPv4 address";
    return "";
  }
  static const std::regex kHost(
      "^[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?(\\.[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-"
      "9_]"
      ")?)*\\.?$");
  if (host.size() > 253 || !std::regex_match(host, kHost))
    return "host \"" + host + "\" is not an IP address or a DNS name";
  return "";
}

// "port" is a decimal number in [min, 65535]. Empty when it is.
std::string portProblem(const std::string& port, int min) {
  int value = -1;
  auto res = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || res.ec != std::errc() || res.ptr != port.data() + port.size() ||
      value < min || value > 65535)
    return "port \"" + port + "\" is not a number from " + std::to_string(min) + " to 65535";
  return "";
}

// "host:port" with an IP address ("[::1]:port" for IPv6), port 0 picking a free one.
}  // namespace

Problem listenAddressProblem(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return "no host or no port";
  std::string host = text.substr(0, colon);
  if (auto p = portProblem(text.substr(colon + 1), 0); !p.empty()) return p;
  in_addr a4{};
  in6_addr a6{};
  bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']' &&
            inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6) == 1;
  if (!v6 && inet_pton(AF_INET, host.c_str(), &a4) != 1)
    return "host \"" + host + "\" is not an IP address";
  return std::nullopt;
}

// scheme://host[:port][/path]: one of `schemes`, a usable host, a port from 1 to 65535.
Problem uriProblem(const std::string& uri, std::initializer_list<const char*> schemes) {
  auto sep = uri.find("://");
  std::string scheme = sep == std::string::npos ? "" : uri.substr(0, sep + 3);
  if (std::none_of(schemes.begin(), schemes.end(), [&](const char* s) { return scheme == s; })) {
    std::string list;
    for (const char* s : schemes) list += (list.empty() ? "" : ", ") + std::string(s);
    return "must be a URI starting with " + list + ", got \"" + uri + "\"";
  }
  std::string authority = uri.substr(sep + 3);
  authority = authority.substr(0, authority.find('/'));
  std::string host = authority, port;
  auto close = authority.rfind(']');
  auto colon = authority.rfind(':');
  if (colon != std::string::npos && (close == std::string::npos || colon > close)) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (auto p = portProblem(port, 1); !p.empty()) return p + " in \"" + uri + "\"";
  }
  if (auto h = hostProblem(host); !h.empty()) return h + " in \"" + uri + "\"";
  return std::nullopt;
}

// The local API's limits (docs/local-api.md, "Limits").
void validateUpgrade(const Config& c, ConfigErrors& errs) {
  auto add = [&](std::string path, std::string msg) { errs.errors.push_back({path, msg}); };
  if (auto keys = upgrade::parseTrustedKeys(c.upgrade.trustedKeys); !keys.isOk()) {
    // "upgrade.trusted_keys[1]: not an Ed25519 public key": the path is the message's own.
    const std::string m = keys.status().message();
    size_t colon = m.find(": ");
    add(m.substr(0, colon), colon == std::string::npos ? m : m.substr(colon + 2));
  }
  if (c.upgrade.healthTimeout < std::chrono::seconds(5) ||
      c.upgrade.healthTimeout > std::chrono::hours(1))
    add("upgrade.health_timeout", "must be from 5s to 1h");
  if (c.upgrade.maxPackageBytes < (int64_t{1} << 20) ||
      c.upgrade.maxPackageBytes > (int64_t{4} << 30))
    add("upgrade.max_package_bytes", "must be from 1048576 to 4294967296 (1 MiB to 4 GiB)");
  if (!c.upgrade.ca.empty() && access(c.upgrade.ca.c_str(), R_OK) != 0)
    add("upgrade.ca", "cannot read file \"" + c.upgrade.ca + "\"");
}

void validateStream(const Config& c, ConfigErrors& errs) {
  auto add = [&](std::string path, std::string msg) { errs.errors.push_back({path, msg}); };
  const std::string& server = c.cloud.websocket.streamServer;
  if (!server.empty()) {
    const std::string what = "must be host:port of CloudCore's stream tunnel (e.g. 10.0.0.1:10004)";
    if (c.cloud.transport != "websocket") {
      add("cloud.websocket.stream_server", "needs cloud.transport websocket");
    } else if (server.find("://") != std::string::npos || server.find('/') != std::string::npos) {
      add("cloud.websocket.stream_server", what + ", without a scheme or a path");
    } else if (size_t colon = server.rfind(':');
               colon == std::string::npos || (server[0] == '[' && colon < server.find(']'))) {
      add("cloud.websocket.stream_server", what + ": no port");
    } else if (auto e = uriProblem("wss://" + server, {"wss://"})) {
      add("cloud.websocket.stream_server", what + ": " + *e);
    }
  }
  if (c.stream.maxSessions < 1 || c.stream.maxSessions > 1024)
    add("stream.max_sessions", "must be from 1 to 1024");
  if (c.stream.maxBytesPerSecond < 1024 || c.stream.maxBytesPerSecond > (int64_t{1} << 30))
    add("stream.max_bytes_per_second", "must be from 1024 to 1073741824 (1 KiB/s to 1 GiB/s)");
  if (c.stream.idleTimeout < std::chrono::seconds(1) ||
      c.stream.idleTimeout > std::chrono::hours(24))
    add("stream.idle_timeout", "must be from 1s to 24h");
}

void validateLimits(const Config& c, ConfigErrors& errs) {
  auto add = [&](std::string path, std::string msg) { errs.errors.push_back({path, msg}); };
  if (c.api.maxConnections < 1 || c.api.maxConnections > 10000)
    add("api.max_connections", "must be from 1 to 10000");
  if (c.api.idleTimeout < std::chrono::milliseconds(100) ||
      c.api.idleTimeout > std::chrono::hours(1))
    add("api.idle_timeout", "must be from 100ms to 1h");
  if (c.api.headerTimeout < std::chrono::milliseconds(100) ||
      c.api.headerTimeout > std::chrono::minutes(10))
    add("api.header_timeout", "must be from 100ms to 10m");
  const std::string& g = c.api.socketGroup;
  if (!g.empty()) {
    static const std::regex kGroupName("^[A-Za-z_][-A-Za-z0-9_.]{0,31}$");
    std::vector<char> buf(16384);
    group entry{};
    group* found = nullptr;
    if (!std::regex_match(g, kGroupName))
      add("api.socket_group", "\"" + g + "\" is not a group name");
    else if (getgrnam_r(g.c_str(), &entry, buf.data(), buf.size(), &found) != 0 || !found)
      add("api.socket_group",
          "no group \"" + g + "\" on this system (the package makes \"outpost\")");
  }
}

// The file's text, or why it cannot be a configuration: only a regular file of at most
// kMaxConfigBytes is read (a directory, /dev/zero or a FIFO is refused at once, never read).
Problem readConfigText(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return "cannot read \"" + path + "\": " + std::strerror(errno);
  struct stat st {};
  Problem problem;
  if (::fstat(fd, &st) != 0) {
    problem = "cannot read \"" + path + "\": " + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    const char* what = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a plain file";
    problem = "\"" + path + "\" is " + what + ", not a regular file";
  } else if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    problem = "\"" + path + "\" has " + std::to_string(st.st_size) + " bytes, more than " +
              std::to_string(kMaxConfigBytes) + " (1 MiB)";
  } else {
    std::string text;
    char buf[65536];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        problem = "cannot read \"" + path + "\": " + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > kMaxConfigBytes) {
        problem =
            "\"" + path + "\" has more than " + std::to_string(kMaxConfigBytes) + " bytes (1 MiB)";
        break;
      }
    }
    if (!problem) out = std::move(text);
  }
  ::close(fd);
  return problem;
}

}  // namespace outpost::agent::detail

namespace outpost::agent {

ConfigErrors checkCertificateDates(const Config& c, std::chrono::system_clock::time_point now) {
  ConfigErrors errs;
  auto check = [&](const std::string& key, const std::string& file) {
    if (file.empty() || access(file.c_str(), R_OK) != 0) return;  // the loader's check says so
    core::Status s = cloudhub::checkCertificateTimes(file, now);
    if (s.code() == core::Code::kFailedPrecondition)
      errs.errors.push_back({key, "the client " + s.message()});
  };
  bool renewed = c.cloud.transport == "websocket" && !c.cloud.websocket.certServer.empty() &&
                 !c.cloud.websocket.tokenFile.empty();
  if (!renewed) check("cloud.tls.cert", c.cloud.tls.cert);
  if (c.device.enabled) check("device.tls.cert", c.device.tls.cert);
  return errs;
}

}  // namespace outpost::agent
