#include "node_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace outpost::agent {
namespace {

bool loopback(const in_addr& a) { return (ntohl(a.s_addr) >> 24) == 127; }

std::string text(const in_addr& a) {
  char buf[INET_ADDRSTRLEN] = {};
  return inet_ntop(AF_INET, &a, buf, sizeof(buf)) ? buf : "";
}

// The source address the kernel picks for `host`: connecting a UDP socket sends nothing.
std::string sourceAddressTowards(const std::string& host) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  if (inet_pton(AF_INET, host.c_str(), &to.sin_addr) != 1) return "";
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  std::string out;
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 && !loopback(local.sin_addr))
    out = text(local.sin_addr);
  close(fd);
  return out;
}

// The interface of the IPv4 default route (/proc/net/route, destination 0), "" when none.
std::string defaultRouteInterface() {
  std::ifstream routes("/proc/net/route");
  std::string line;
  std::getline(routes, line);  // the header
  while (std::getline(routes, line)) {
    std::istringstream in(line);
    std::string iface, destination;
    if (in >> iface >> destination && destination == "00000000") return iface;
  }
  return "";
}

// The first non-loopback IPv4 address of an interface that is up (of `only`, when given).
std::string interfaceAddress(const std::string& only) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string out;
  for (ifaddrs* i = list; i && out.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
    if (!only.empty() && only != i->ifa_name) continue;
    const auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if (!loopback(a->sin_addr)) out = text(a->sin_addr);
  }
  freeifaddrs(list);
  return out;
}

}  // namespace

std::string discoverNodeAddress(const std::string& cloudHost) {
  std::string address = sourceAddressTowards(cloudHost);
  if (address.empty()) {
    std::string iface = defaultRouteInterface();
    if (!iface.empty()) address = interfaceAddress(iface);
  }
  if (address.empty()) address = interfaceAddress("");
  return address;
}

std::string urlHost(const std::string& url) {
  auto scheme = url.find("://");
  std::string rest = scheme == std::string::npos ? url : url.substr(scheme + 3);
  rest = rest.substr(0, rest.find('/'));
  if (auto at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') return rest.substr(1, rest.find(']') - 1);
  return rest.substr(0, rest.find(':'));
}

}  // namespace outpost::agent
