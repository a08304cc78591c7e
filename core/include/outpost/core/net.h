#pragma once
// Socket tuning that the MQTT libraries we use do not offer.

namespace outpost::core {

// Sets TCP_NODELAY on this process's TCP sockets whose peer port is `port`. Paho does not disable
// Nagle's algorithm and has no option for it: a small message written right after the previous one
// then waits for the peer's delayed ACK (40 ms on Linux). Harmless for other sockets to that port.
void disableNagleTowards(int port);

// The port of a URI such as "tcp://host:1883" (1883), or 0 when it names none.
int uriPort(const char* uri);

}  // namespace outpost::core
