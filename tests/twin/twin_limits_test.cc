// What the twins refuse (docs/device-twin.md, Limits), against a real mosquitto and a real store:
// JSON nested past the limits on every twin topic (also retained, across a restart), device ids
// unfit for topics and keys, and the limits on devices, properties and values; and what a deleted
// device leaves behind.
#include "twin_fixture.h"

using namespace twintest;

namespace {

// Arrays nested `levels` deep: far past what a recursive serializer survives at 200 000.
std::string nested(size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }

// A twin update whose property type is `deep`: the old code parsed it and serialized the type into
// its error message.
std::string deepUpdate(const std::string& eventId, size_t levels) {
  return R"({"event_id":")" + eventId +
         R"(","twin":{"p":{"actual":{"value":"1"},"metadata":{"type":)" + nested(levels) + "}}}}";
}

constexpr size_t kDeep = 200000;

size_t countLines(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t pos = text.find(part); pos != std::string::npos; pos = text.find(part, pos + 1)) ++n;
  return n;
}

// Every property row the store holds, over all devices.
size_t storedRows(Agent& agent) {
  size_t rows = 0;
  auto devices = agent.reader->devices();
  REQUIRE(devices.isOk());
  for (const auto& d : *devices) rows += agent.storedTwin(d.id).size();
  return rows;
}

void allowBigPayloads(twin::TwinOptions& o) { o.maxPayloadBytes = 1 << 20; }

}  // namespace

TEST_CASE("JSON nested past the limits is refused on every twin topic before it is parsed") {
  Fixture f(allowBigPayloads);
  std::string deep = deepUpdate("deep", kDeep);
  for (const char* tail : {"twin/update", "twin/get", "state/update"}) {
    CAPTURE(tail);
    json r = f.device.callRaw(tail, deep, std::string(tail) + "/result");
    CHECK(r["code"] == 400);
    CHECK(r["reason"].get<std::string>().find("nests deeper than 100 levels") != std::string::npos);
  }
  json r = f.device.callRaw("membership/get", "{\"event_id\":" + nested(kDeep) + "}",
                            "membership/get/result", "$hw/events/node/edge-1/");
  CHECK(r["code"] == 400);
  CHECK(f.agent.metric("outpost_twin_refused_total{reason=\"json\"}") == 4);

  // The thread lives and serves the next request.
  CHECK(f.agent.twin->alive(1s));
  r = f.device.call("twin/update", update("next", {{"p", actual("1")}}), "twin/update/result");
  CHECK_FALSE(r.contains("code"));
  CHECK(f.agent.storedTwin(kDev).size() == 1);
  f.agent.logging.flush();
  CHECK(countLines(readFile(f.agent.logPath), "refused request on $hw/events/") == 4);
}

TEST_CASE("a retained deep payload is refused again after a restart, and the agent goes on") {
  Fixture f(allowBigPayloads);
  f.device.client.publish(kTopic + "twin/update", deepUpdate("kept", kDeep), true);
  json r = f.device.waitNext(kTopic + "twin/update/result", 0);
  CHECK(r["code"] == 400);

  f.agent.restart();  // subscribing again brings the retained message back
  r = f.device.waitNext(kTopic + "twin/update/result", 1);
  CHECK(r["code"] == 400);
  REQUIRE(waitFor([&] { return f.agent.connected(); }));
  CHECK(f.agent.twin->alive(1s));
  r = f.device.call("twin/update", update("after", {{"p", actual("2")}}), "twin/update/result");
  CHECK(r["event_id"] == "after");
  CHECK_FALSE(r.contains("code"));
  CHECK(f.agent.metric("outpost_twin_refused_total{reason=\"json\"}") == 2);
  f.device.client.publish(kTopic + "twin/update", "", true);  // clears the retained message
}

TEST_CASE("a device id unfit for topics and store keys is refused with a reason") {
  Fixture f;
  // Kubernetes names Devices: an id that no Device can have is 400, not 404.
  json r = f.device.callRaw("twin/update", update("bad", {{"p", actual("1")}}).dump(),
                            "twin/update/result", "$hw/events/device/default/Bad_Name/");
  CHECK(r["code"] == 400);
  CHECK(r["reason"].get<std::string>().find("device id name \"Bad_Name\"") != std::string::npos);
  r = f.device.callRaw("twin/get", "{}", "twin/get/result", "$hw/events/device/NS/thermo/");
  CHECK(r["code"] == 400);
  CHECK(r["reason"].get<std::string>().find("namespace") != std::string::npos);
  CHECK(f.agent.metric("outpost_twin_refused_total{reason=\"device_id\"}") == 2);

  // A Device object whose key cannot name a device is not bound.
  f.agent.putDevice("Bad_Name", kNode, {});
  f.agent.putDevice("pump", kNode, {});  // a later change, to know the first was handled
  auto m = f.device.waitNext("$hw/events/node/edge-1/membership/updated", 1);
  CHECK(m["added_devices"][0]["id"] == "default/pump");
  CHECK(f.agent.twin->status().devices == 2);
  CHECK(f.agent.metric("outpost_twin_refused_total{reason=\"device_id\"}") == 3);
  CHECK_FALSE(f.agent.reader->device("default/Bad_Name")->has_value());
}

TEST_CASE("properties past max_properties_per_device are answered 400 and never stored") {
  Fixture f([](twin::TwinOptions& o) { o.maxPropertiesPerDevice = 4; });
  json r = f.device.call(
      "twin/update", update("a", {{"p1", actual("1")}, {"p2", actual("2")}, {"p3", actual("3")}}),
      "twin/update/result");
  CHECK_FALSE(r.contains("code"));
  r = f.device.call("twin/update", update("b", {{"p4", actual("4")}, {"p5", actual("5")}}),
                    "twin/update/result");
  CHECK(r["code"] == 400);
  CHECK(r["event_id"] == "b");
  std::string reason = r["reason"];
  CHECK(reason.find("limit of 4 properties per device") != std::string::npos);
  CHECK(reason.find("device.max_properties_per_device") != std::string::npos);
  CHECK(f.agent.storedTwin(kDev).size() == 3);

  // Updating what exists is not growth; one new property still fits.
  r = f.device.call("twin/update", update("c", {{"p1", actual("9")}, {"p4", actual("4")}}),
                    "twin/update/result");
  CHECK_FALSE(r.contains("code"));
  CHECK(f.agent.storedTwin(kDev).size() == 4);

  // A deleted property is kept for the cloud, and gives its place to a new one.
  f.device.call("twin/update", update("d", {{"p2", nullptr}}), "twin/update/result");
  CHECK(f.agent.storedTwin(kDev).size() == 4);
  r = f.device.call("twin/update", update("e", {{"p6", actual("6")}}), "twin/update/result");
  CHECK_FALSE(r.contains("code"));
  auto twin = f.agent.storedTwin(kDev);
  REQUIRE(twin.size() == 4);
  for (const auto& p : twin) CHECK(p.name != "p2");
  r = f.device.call("twin/update", update("f", {{"p7", actual("7")}}), "twin/update/result");
  CHECK(r["code"] == 400);
  CHECK(f.agent.metric("outpost_twin_refused_total{reason=\"max_properties\"}") == 2);

  // The cloud is held to the same limit: a new property past it is rejected (the edge's twin
  // goes back), and desired values of a Device object past it are ignored.
  json cloudTwin = {
      {"twin",
       {{"p8",
         {{"expected", {{"value", "8"}}}, {"expected_version", {{"cloud", 1}, {"edge", 0}}}}}}}};
  CHECK(f.agent.applyCloudTwin(kDev, cloudTwin).isOk());
  f.agent.putDevice("thermo", kNode, {{"p1", "5"}, {"p9", "9"}});
  REQUIRE(waitFor([&] {
    return f.agent.metric("outpost_twin_refused_total{reason=\"max_properties\"}") == 4;
  }));
  twin = f.agent.storedTwin(kDev);
  CHECK(twin.size() == 4);
  for (const auto& q : twin) CHECK((q.name != "p8" && q.name != "p9"));
  REQUIRE(waitFor([&] {
    auto t = f.agent.storedTwin(kDev);
    return t[0].name == "p1" && t[0].expected && t[0].expected->value == "5";
  }));
}

TEST_CASE("many new large properties: the twin and the store stop at the default limit") {
  Fixture f;
  std::string big(400, 'v');
  int refusedAnswers = 0;
  for (int u = 0; u < 30; ++u) {
    json props = json::object();
    for (int i = 0; i < 10; ++i)
      props["u" + std::to_string(u) + "p" + std::to_string(i)] = actual(big);
    json r =
        f.device.call("twin/update", update("u" + std::to_string(u), props), "twin/update/result");
    if (r.contains("code")) {
      CHECK(r["code"] == 400);
      ++refusedAnswers;
    }
  }
  CHECK(refusedAnswers == 5);  // 25 updates make 250; 260 is past 256
  CHECK(f.agent.storedTwin(kDev).size() == 250);
  CHECK(storedRows(f.agent) <= 256);
  json got = f.device.call("twin/get", {{"event_id", "g"}}, "twin/get/result");
  CHECK(got["twin"].size() == 250);
}

TEST_CASE("values past max_value_bytes are answered 400 naming the limit and not stored") {
  Fixture f([](twin::TwinOptions& o) { o.maxValueBytes = 16; });
  json r = f.device.call("twin/update", update("ok", {{"p", actual(std::string(16, 'x'))}}),
                         "twin/update/result");
  CHECK_FALSE(r.contains("code"));
  r = f.device.call("twin/update", update("long", {{"q", actual(std::string(17, 'x'))}}),
                    "twin/update/result");
  CHECK(r["code"] == 400);
  CHECK(r["reason"].get<std::string>().find("17 bytes is over the limit of 16 bytes "
                                            "(device.max_value_bytes)") != std::string::npos);
  f.agent.putDevice("thermo", kNode, {{"d", std::string(17, 'y')}});
  REQUIRE(waitFor([&] {
    return f.agent.metric("outpost_twin_refused_total{reason=\"max_value_bytes\"}") == 2;
  }));
  auto twin = f.agent.storedTwin(kDev);
  REQUIRE(twin.size() == 1);
  CHECK(twin[0].name == "p");
}

TEST_CASE("devices past max_devices are not bound, answered 400, and bound once one leaves") {
  Fixture f([](twin::TwinOptions& o) { o.maxDevices = 2; });
  f.agent.putDevice("pump", kNode, {});
  f.device.waitNext("$hw/events/node/edge-1/membership/updated", 1);
  f.agent.putDevice("fan", kNode, {{"speed", "3"}});
  REQUIRE(waitFor(
      [&] { return f.agent.metric("outpost_twin_refused_total{reason=\"max_devices\"}") == 1; }));
  CHECK(f.agent.twin->status().devices == 2);
  CHECK(f.agent.reader->devices()->size() == 2);
  json r = f.device.callRaw("twin/get", "{}", "twin/get/result", "$hw/events/device/default/fan/");
  CHECK(r["code"] == 400);
  CHECK(r["reason"].get<std::string>().find("limit of 2 devices (device.max_devices)") !=
        std::string::npos);

  f.agent.deleteDevice("pump");
  auto m = f.device.waitNext("$hw/events/node/edge-1/membership/updated", 3);
  CHECK(m["added_devices"][0]["id"] == "default/fan");
  r = f.device.callRaw("twin/get", "{}", "twin/get/result", "$hw/events/device/default/fan/");
  CHECK(r["twin"]["speed"]["expected"]["value"] == "3");
  CHECK(f.agent.reader->devices()->size() == 2);
  CHECK(f.agent.metric("outpost_twin_refused_total{reason=\"max_devices\"}") == 1);
}

TEST_CASE("a deleted device leaves no rows behind, however often it comes and goes") {
  Fixture f;
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    f.agent.putDevice("pump", kNode, {{"mode", "on"}});
    f.device.waitNext("$hw/events/node/edge-1/membership/updated", 1 + 2 * round);
    json props = json::object();
    for (int i = 0; i < 20; ++i)
      props["r" + std::to_string(round) + "p" + std::to_string(i)] = actual("1");
    json r = f.device.callRaw("twin/update", update("u", props).dump(), "twin/update/result",
                              "$hw/events/device/default/pump/");
    CHECK_FALSE(r.contains("code"));
    CHECK(f.agent.storedTwin("default/pump").size() == 21);
    f.agent.deleteDevice("pump");
    f.device.waitNext("$hw/events/node/edge-1/membership/updated", 2 + 2 * round);
    REQUIRE(waitFor([&] { return f.agent.storedTwin("default/pump").empty(); }));
    CHECK_FALSE(f.agent.reader->device("default/pump")->has_value());
  }
  CHECK(f.agent.twin->status().devices == 1);
  CHECK(storedRows(f.agent) == 0);  // thermo has no properties
}
