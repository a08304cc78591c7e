#pragma once

namespace outpost::cloudhub {

// Tells the MQTT library (Paho, shared by the cloud link and the device twins) to leave OpenSSL's
// initialisation to OpenSSL, which initialises itself when a TLS connection first needs it. Paho's
// own (configuration file, error strings, every cipher and digest) would otherwise run at the first
// client even with tcp:// brokers: ~1.5 MB of libcrypto paged in for nothing (docs/benchmarks.md,
// "Footprint"). Call once, before any thread or MQTT client exists: Paho's global initialisation
// must not run while a client is alive.
void leaveOpensslInitToOpenssl();

}  // namespace outpost::cloudhub
