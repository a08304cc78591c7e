#pragma once
// The node's address (its InternalIP, and the IP of its host network pods) when node.address does
// not name one.

#include <string>

namespace outpost::agent {

// The IPv4 address this host would use towards `cloudHost` (an IP address literal; for a name,
// which is not looked up, the interface of the default route), else the first non-loopback IPv4
// address of an interface that is up; "" when the host has none.
std::string discoverNodeAddress(const std::string& cloudHost);

// The host part of a cloud URL ("wss://1.2.3.4:10000", "ssl://broker:8883", "tcp://[::1]:1883").
std::string urlHost(const std::string& url);

}  // namespace outpost::agent
