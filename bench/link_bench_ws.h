#pragma once
// B3, WebSocket column of outpost_bench_link (bench/link_bench_ws.cc): the CloudHub test double
// (tests/support/cloudhub_double) as the cloud sends 2 KB pod inserts over mutual-TLS WebSocket
//  - ours: to the real WebSocket link in-process, wired as agent/ wires it (real SqliteStore,
//    commit window 0), complete when the ack (parent_msg_id) arrives at the double;
//  - echo: to a minimal Beast WebSocket client that acks each frame at once and stores nothing
//    (the double's own loopback limit).
// A throughput run (a window of messages not yet acked) and a latency run (one at a time).

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace outpost::bench {

struct WsSample {
  double perSecond = 0;
  std::vector<double> latencyMs;  // per message, insert sent to ack received
};

struct WsScenario {
  std::string name;  // throughput.ws_echo, throughput.ws_ours, latency.ws_echo, latency.ws_ours
  std::function<WsSample(int rep)> run;
};

struct WsColumnOptions {
  size_t messages = 2000;
  size_t window = 64;
  size_t latencyMessages = 200;
  size_t warmup = 20;
  // The pod JSON of the MQTT column: podObject(name, resourceVersion, index).
  std::function<std::string(const std::string&, const std::string&, size_t)> podObject;
};

class WebsocketColumn {
 public:
  explicit WebsocketColumn(WsColumnOptions options);  // makes the certificates (openssl)
  ~WebsocketColumn();
  WebsocketColumn(const WebsocketColumn&) = delete;
  WebsocketColumn& operator=(const WebsocketColumn&) = delete;

  // The column's four scenarios, to run interleaved with the others in every repetition.
  std::vector<WsScenario> scenarios();

  using Series = std::map<std::string, std::vector<double>>;  // scenario -> one value per rep
  // Ratios (ours / echo, side by side per repetition), the checks that resends and periodic
  // traffic stayed out of the timed runs, and the method, for the JSON's "websocket" key.
  nlohmann::json summary(const Series& rate, const Series& p50, const Series& p99) const;
  // The Markdown rows of the column and its ratios.
  void print(const Series& rate, const Series& p50, const Series& p99) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// `outpost_bench_link --ws-only`: the WebSocket column alone, with its JSON to `out` ("" = none).
int websocketOnly(const WsColumnOptions& options, int reps, const std::string& out);

}  // namespace outpost::bench
