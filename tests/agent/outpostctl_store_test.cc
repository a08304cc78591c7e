// outpostctl and outpostd with what an older agent or a failing disk leaves: objects stored nested
// too deep, an answer nested too deep, the state directory removed under a running agent.
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>

#include "ctl_config.h"
#include "outpost/agent/api_server.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/core/bus.h"
#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/metrics.h"
#include "outpost/metadb/sqlite_store.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"

using namespace outpost::test;
using namespace std::chrono_literals;
using nlohmann::json;

// ---- objects nested too deep (stored by an older agent), a store removed under the agent

namespace {

// Writes `object` under `key` straight into the store file at `db`, as an older agent (before the
// door checked depth) could have stored it.
void storeDirectly(const std::string& db, const std::string& key, const std::string& object) {
  outpost::core::SystemClock clock;
  outpost::core::Bus bus;
  outpost::core::Logging logging;
  outpost::core::MetricsRegistry metrics;
  outpost::core::EventLoop loop("test", clock);
  loop.start();
  outpost::metadb::StoreOptions o;
  o.path = db;
  auto store = outpost::metadb::openSqliteStore(o, clock, bus, logging, metrics);
  REQUIRE_MESSAGE(store.isOk(), store.status().toString());
  auto done = std::make_shared<std::promise<outpost::core::Status>>();
  auto result = done->get_future();
  outpost::metadb::WriteBatch batch;
  batch.apply({outpost::metadb::ResourceChange::Kind::kUpsert, key, "1", "uid-1", object, "test"});
  (*store)->write(std::move(batch), loop,
                  [done](outpost::core::Result<outpost::metadb::WriteResult> r) {
                    done->set_value(r.status());
                  });
  REQUIRE(result.wait_for(20s) == std::future_status::ready);
  auto s = result.get();
  REQUIRE_MESSAGE(s.isOk(), s.toString());
  store->reset();
  loop.stop();
}

std::string configMap(const std::string& name, const std::string& extra = "") {
  return R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":")" + name +
         R"(","namespace":"default"},"data":{"k":"v"})" +
         (extra.empty() ? "" : ",\"extra\":" + extra) + "}";
}

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

TEST_CASE(
    "an object stored 70 000 levels deep is named and refused by get and describe, not printed "
    "(no crash, no gigabytes), and the rest is still listed") {
  TempDir dir;
  std::filesystem::create_directories(dir / "state");
  storeDirectly((dir / "state" / "outpost.db").string(), "default/configmap/deep",
                configMap("deep", nested(70000)));
  storeDirectly((dir / "state" / "outpost.db").string(), "default/configmap/fine",
                configMap("fine"));
  writeFile(dir / "outpost.yaml",
            "node: {name: edge-7, state_dir: " + (dir / "state").string() + "}\n" +
                "runtime: {enabled: false}\ndevice: {enabled: false}\n" +
                "cloud: {mqtt: {broker: \"tcp://127.0.0.1:1\"}}\n" +
                "api: {socket: " + (dir / "o.sock").string() + ", metrics_address: \"\"}\n");
  std::string config = (dir / "outpost.yaml").string();
  Child agent({outpostd(), "--config", config});
  REQUIRE(waitFor([&] { return run({outpostctl(), "-c", config, "status"}) == 0; }));

  std::string out, err;
  // -o yaml crashed (the emitter recursed once per level); now a clear refusal.
  REQUIRE(run({outpostctl(), "-c", config, "get", "configmap", "deep", "-o", "yaml"}, &out, &err) ==
          outpost::agent::kExitFailure);
  CHECK(err.find("default/configmap/deep") != std::string::npos);
  CHECK(err.find("nests deeper than 100") != std::string::npos);
  CHECK(out.size() < 1000);
  // -o json printed gigabytes of indentation for it.
  REQUIRE(run({outpostctl(), "-c", config, "get", "configmap", "deep", "-o", "json"}, &out, &err) ==
          outpost::agent::kExitFailure);
  CHECK(out.size() < 1000);
  CHECK(err.find("nests deeper than 100") != std::string::npos);
  // The list shows what it can, names what it cannot, and says so in its exit code.
  CHECK(run({outpostctl(), "-c", config, "get", "configmaps", "-o", "json"}, &out, &err) ==
        outpost::agent::kExitFailure);
  CHECK(out.size() < 10000);
  CHECK(json::parse(out)["items"].size() == 1);
  CHECK(json::parse(out)["items"][0]["metadata"]["name"] == "fine");
  CHECK(err.find("default/configmap/deep") != std::string::npos);
  CHECK(run({outpostctl(), "-c", config, "get", "configmaps"}, &out, &err) ==
        outpost::agent::kExitFailure);
  CHECK(out.find("fine") != std::string::npos);
  CHECK(out.find("deep") != std::string::npos);
  CHECK(run({outpostctl(), "-c", config, "describe", "configmap", "deep"}, &out, &err) ==
        outpost::agent::kExitFailure);
  CHECK(err.find("nests deeper than 100") != std::string::npos);
  CHECK(run({outpostctl(), "-c", config, "get", "configmap", "fine", "-o", "yaml"}, &out) == 0);
  CHECK(out.find("name: fine") != std::string::npos);

  agent.signal(SIGTERM);
  CHECK(agent.wait(2s) == 0);
}

TEST_CASE("outpostctl refuses an answer nested too deep (an older agent's) before parsing it") {
  TempDir dir;
  std::string sock = (dir / "old.sock").string();
  outpost::agent::ApiServer old{outpost::core::Logger()};
  old.route("GET", "/v1/resources", outpost::agent::Listener::kUnix,
            [](const outpost::agent::ApiRequest&) {
              return outpost::agent::ApiResponse{
                  200, "application/json",
                  R"([{"key":"default/configmap/deep","namespace":"default","name":"deep",)"
                  R"("type":"configmap","resourceVersion":"1","updated":0,"object":)" +
                      configMap("deep", nested(70000)) + "}]"};
            });
  REQUIRE(old.start(sock, "").isOk());
  for (const char* output : {"yaml", "json"}) {
    std::string out, err;
    REQUIRE(run({outpostctl(), "--socket", sock, "get", "configmap", "deep", "-o", output}, &out,
                &err) == outpost::agent::kExitFailure);
    CHECK(err.find("the agent's answer is refused: JSON nests deeper than") != std::string::npos);
    CHECK(out.empty());
  }
  std::string err;
  CHECK(run({outpostctl(), "--socket", sock, "describe", "configmap", "deep"}, nullptr, &err) ==
        outpost::agent::kExitFailure);
  CHECK(err.find("refused") != std::string::npos);
}

TEST_CASE(
    "when the state directory is removed under the agent it stops being ready, naming the store, "
    "and acks nothing more; the next start keeps what runs until the cloud resends") {
  TempDir dir;
  Mosquitto broker;
  std::string config = writeCtlConfig(dir, broker);
  auto agent = std::make_unique<Child>(std::vector<std::string>{outpostd(), "--config", config});
  REQUIRE(waitFor([&] { return run({outpostctl(), "-c", config, "status"}) == 0; }));

  const std::string prefix = "outpost/v1/nodes/edge-7/";
  MqttTestClient cloud(broker.uri());
  cloud.subscribe(prefix + "up");
  auto put = [&](const std::string& name) {
    json env = {{"header", {{"msg_id", "msg-" + name}, {"timestamp", 1}, {"resourceversion", "1"}}},
                {"route",
                 {{"source", "test"},
                  {"group", "resource"},
                  {"operation", "update"},
                  {"resource", "default/configmap/" + name}}},
                {"content", json::parse(configMap(name))}};
    cloud.publish(prefix + "desired/default/configmap/" + name, env.dump(), true);
  };
  auto acked = [&](const std::string& name) {
    for (const auto& m : cloud.messagesOn(prefix + "up"))
      if (m.payload.find("msg-" + name) != std::string::npos) return true;
    return false;
  };
  put("before");
  REQUIRE(waitFor([&] { return acked("before"); }));

  std::filesystem::remove_all(dir / "state");
  const std::string db = (dir / "state" / "outpost.db").string();
  std::string out;
  REQUIRE(waitFor([&] {
    return run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) == 0 &&
           json::parse(out)["ready"] == false;
  }));
  CHECK(json::parse(out)["not_ready_reason"].get<std::string>().find(db + " is gone") !=
        std::string::npos);
  REQUIRE(run({outpostctl(), "-c", config, "status"}, &out) == 0);
  CHECK(out.find("Ready:    no (the store " + db + " is gone") != std::string::npos);

  // A new object is refused by the store, so the link does not acknowledge it.
  put("after");
  REQUIRE(waitFor([&] {
    return agent->err().find("storing default/configmap/after failed: DATA_LOSS") !=
           std::string::npos;
  }));
  CHECK_FALSE(acked("after"));
  REQUIRE(waitFor([&] { return agent->err().find("not ready: the store") != std::string::npos; }));
  agent->signal(SIGTERM);
  CHECK(agent->wait(5s) == 0);
  CHECK(agent->err().find("not ready: the store") == agent->err().rfind("not ready: the store"));

  // The restart finds no store: an empty one is marked needs_full_resync, so deploy keeps the
  // containers it finds rather than removing them as "nobody wants" them.
  agent = std::make_unique<Child>(std::vector<std::string>{outpostd(), "--config", config});
  REQUIRE(waitFor([&] {
    return run({outpostctl(), "-c", config, "status", "-o", "json"}, &out) == 0 &&
           json::parse(out)["ready"] == true;
  }));
  CHECK(agent->err().find("no store at " + db) != std::string::npos);
  agent->signal(SIGTERM);
  CHECK(agent->wait(5s) == 0);
  outpost::core::SystemClock clock;
  outpost::core::Bus bus;
  outpost::core::Logging logging;
  outpost::core::MetricsRegistry metrics;
  outpost::metadb::StoreOptions o;
  o.path = db;
  auto store = outpost::metadb::openSqliteStore(o, clock, bus, logging, metrics);
  REQUIRE(store.isOk());
  auto reader = (*store)->openReader();
  REQUIRE(reader.isOk());
  auto mark = (*reader)->getKv(outpost::metadb::kKvNeedsFullResync);
  REQUIRE(mark.isOk());
  CHECK(*mark == std::optional<std::string>("1"));
}
