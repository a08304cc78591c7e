// The runtime URL and the upgrade request of a relay: everything here comes from the tunnel (the
// URL from the runtime, the method and headers from the cloud) and is checked before any byte is
// written to the runtime.

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <string_view>

#include "outpost/stream/relay.h"
#include "outpost/validation/validation.h"

namespace outpost::stream {
namespace {

constexpr size_t kMaxUrl = 512;
constexpr size_t kMaxToken = 128;
constexpr size_t kMaxHeaderValue = 1024;
constexpr size_t kMaxHeaders = 32;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// 127.a.b.c with each part 0-255 and no leading zeros.
bool loopbackV4(std::string_view host) {
  std::array<int, 4> parts{};
  size_t at = 0;
  for (size_t i = 0; i < 4; ++i) {
    size_t end = i < 3 ? host.find('.', at) : host.size();
    if (end == std::string_view::npos || end == at || end - at > 3) return false;
    std::string_view part = host.substr(at, end - at);
    if (part.size() > 1 && part[0] == '0') return false;
    auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), parts[i]);
    if (ec != std::errc() || p != part.data() + part.size() || parts[i] > 255) return false;
    at = end + 1;
  }
  return parts[0] == 127;
}

bool tokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '=';
}

}  // namespace

core::Result<RuntimeUrl> parseRuntimeUrl(const std::string& url) {
  auto refuse = [&](const std::string& why) {
    return core::invalidArgument("runtime streaming URL refused (" + why + ")");
  };
  if (url.size() > kMaxUrl) return refuse("longer than 512 bytes");
  constexpr std::string_view kScheme = "http://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) return refuse("not http://");
  std::string_view rest = std::string_view(url).substr(kScheme.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return refuse("no path");
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = rest.substr(slash);
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) return refuse("no port");
  std::string_view host = authority.substr(0, colon);
  std::string_view port = authority.substr(colon + 1);
  RuntimeUrl out;
  if (host != "[::1]" && !loopbackV4(host)) return refuse("the host is not a loopback address");
  out.host = std::string(host);
  unsigned int p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p == 0 ||
      p > 65535 || port[0] == '0')
    return refuse("the port is not 1-65535");
  out.port = static_cast<unsigned short>(p);
  std::string_view token;
  for (std::string_view kind : {"/exec/", "/attach/", "/portforward/"}) {
    if (path.compare(0, kind.size(), kind) == 0) token = path.substr(kind.size());
  }
  if (token.empty() || token.size() > kMaxToken ||
      !std::all_of(token.begin(), token.end(), tokenChar))
    return refuse("the path is not /exec/, /attach/ or /portforward/ and a token");
  out.path = std::string(path);
  return out;
}

core::Result<std::string> upgradeRequest(
    const RuntimeUrl& url, const std::string& method,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  if (method != "GET" && method != "POST")
    return core::invalidArgument("stream request refused: method must be GET or POST");
  if (headers.size() > kMaxHeaders)
    return core::invalidArgument("stream request refused: more than 32 headers");
  static constexpr std::array<std::string_view, 6> kAllowed = {"Connection",
                                                               "Upgrade",
                                                               "X-Stream-Protocol-Version",
                                                               "Sec-WebSocket-Key",
                                                               "Sec-WebSocket-Version",
                                                               "Sec-WebSocket-Protocol"};
  std::string req = method + " " + url.path + " HTTP/1.1\r\nHost: " + url.host + ":" +
                    std::to_string(url.port) + "\r\n";
  for (const auto& [name, value] : headers) {
    bool bad = value.size() > kMaxHeaderValue || name.size() > 64;
    for (char c : name + value) {
      auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) bad = true;
    }
    if (bad) {
      return core::invalidArgument("stream request refused: header " +
                                   validation::printable(name, 64) +
                                   " has a control character or is too long");
    }
    const std::string& headerName = name;  // clang 14 cannot capture a structured binding
    auto allowed = std::find_if(kAllowed.begin(), kAllowed.end(),
                                [&](std::string_view a) { return iequals(a, headerName); });
    if (allowed == kAllowed.end()) continue;  // not the runtime's business (Host, Cookie, ...)
    req += std::string(*allowed) + ": " + value + "\r\n";
  }
  req += "\r\n";
  return req;
}

}  // namespace outpost::stream
