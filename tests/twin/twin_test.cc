// Device twins against a real mosquitto, the device played by an MQTT client: every topic and
// error of PROTOCOL.md §2, Device objects from the cloud, outages and restarts.
#include "twin_fixture.h"

using namespace twintest;

TEST_CASE("a Device object for this node joins the membership; membership/get lists it") {
  TempDir dir;
  Mosquitto broker;
  Agent agent(dir, broker.uri());
  Device device(broker.uri());
  agent.start();
  REQUIRE(waitFor([&] { return agent.connected(); }));

  agent.putDevice("other-node-dev", "edge-2", {});
  agent.putDevice("thermo", kNode, {});
  auto m = device.waitNext("$hw/events/node/edge-1/membership/updated", 0);
  CHECK(m["added_devices"] == json::array({{{"id", kDev}, {"name", "thermo"}}}));
  CHECK(m["removed_devices"].is_null());
  CHECK(m["event_id"].get<std::string>().size() == 36);
  CHECK(agent.metric("outpost_twin_devices") == 1);
  CHECK(agent.metric("outpost_twin_link_up") == 1);

  json got = device.callRaw("membership/get", R"({"event_id":"m1"})", "membership/get/result",
                            "$hw/events/node/edge-1/");
  CHECK(got["event_id"] == "m1");
  CHECK(got["timestamp"].is_number_integer());
  REQUIRE(got["devices"].size() == 1);
  CHECK(got["devices"][0]["id"] == kDev);
  CHECK(got["devices"][0]["name"] == "thermo");
}

// Issue 17, item 7: KubeEdge's twin reads a device's description from the Device's labels.
TEST_CASE("a device's description comes from its labels as KubeEdge reads it, else annotations") {
  TempDir dir;
  Mosquitto broker;
  Agent agent(dir, broker.uri());
  Device device(broker.uri());
  agent.start();
  REQUIRE(waitFor([&] { return agent.connected(); }));
  auto put = [&](const std::string& name, const json& metadataExtra) {
    json meta = {{"name", name}, {"namespace", "default"}, {"uid", "uid-" + name}};
    meta.update(metadataExtra);
    json obj = {{"apiVersion", "devices.kubeedge.io/v1beta1"},
                {"kind", "Device"},
                {"metadata", meta},
                {"spec", {{"nodeName", kNode}}}};
    metadb::ResourceChange c;
    c.key = "default/device/" + name;
    c.version = std::to_string(++agent.version);
    c.uid = "uid-" + name;
    c.object = obj.dump();
    c.origin = "cloud";
    REQUIRE(agent.write(metadb::WriteBatch().apply(std::move(c))).isOk());
  };
  put("lamp", {{"labels", {{"description", "hall-lamp"}}},
               {"annotations", {{"description", "annotated"}}}});
  put("fan", {{"annotations", {{"description", "annotated"}}}});
  REQUIRE(waitFor([&] { return agent.twin->status().devices == 2; }));
  json got = device.callRaw("membership/get", R"({"event_id":"m1"})", "membership/get/result",
                            "$hw/events/node/edge-1/");
  std::map<std::string, std::string> descriptions;
  for (const auto& d : got["devices"]) descriptions[d["name"]] = d.value("description", "");
  CHECK(descriptions["lamp"] == "hall-lamp");
  CHECK(descriptions["fan"] == "annotated");
}

TEST_CASE("a device moved to another node or deleted leaves the membership") {
  Fixture f;
  f.agent.putDevice("pump", kNode, {});
  f.device.waitNext("$hw/events/node/edge-1/membership/updated", 1);

  f.agent.putDevice("thermo", "edge-2", {});  // moved away
  auto m = f.device.waitNext("$hw/events/node/edge-1/membership/updated", 2);
  CHECK(m["added_devices"].is_null());
  CHECK(m["removed_devices"] == json::array({{{"id", kDev}, {"name", "thermo"}}}));
  CHECK(f.agent.twin->status().devices == 1);
  CHECK_FALSE(f.agent.reader->device(kDev)->has_value());

  f.agent.deleteDevice("pump");  // deleted in the cloud
  m = f.device.waitNext("$hw/events/node/edge-1/membership/updated", 3);
  CHECK(m["removed_devices"][0]["id"] == "default/pump");
  CHECK(f.agent.twin->status().devices == 0);

  // A request for a device that left is answered 404.
  json r = f.device.call("twin/get", {{"event_id", "g"}}, "twin/get/result");
  CHECK(r["code"] == 404);
}

TEST_CASE("a twin update is stored and answered with result, document and delta") {
  Fixture f;
  json req = update("e1", {{"temperature",
                            {{"actual", {{"value", "21"}}},
                             {"expected", {{"value", "25"}}},
                             {"metadata", {{"type", "int"}}}}},
                           {"mode", actual("eco")}});
  json r = f.device.call("twin/update", req, "twin/update/result");
  CHECK(r["event_id"] == "e1");
  CHECK_FALSE(r.contains("code"));
  auto& t = r["twin"]["temperature"];
  CHECK(t["actual"]["value"] == "21");
  CHECK(t["expected"]["value"] == "25");
  CHECK(t["actual"]["metadata"]["timestamp"].is_number_integer());
  CHECK(t["optional"] == true);
  CHECK(t["metadata"]["type"] == "int");
  CHECK_FALSE(t.contains("expected_version"));  // versions never reach the local broker
  CHECK(r["twin"]["mode"]["actual"]["value"] == "eco");
  CHECK_FALSE(r["twin"]["mode"].contains("expected"));  // only the sides updated
  CHECK(r["twin"]["mode"]["metadata"]["type"] == "string");

  json doc = f.device.waitNext(kTopic + "twin/update/document", 0);
  CHECK(doc["event_id"] == "e1");
  CHECK(doc["twin"]["temperature"]["last"].is_null());
  CHECK(doc["twin"]["temperature"]["current"]["expected"]["value"] == "25");
  CHECK(doc["twin"]["mode"]["current"]["actual"]["value"] == "eco");

  json delta = f.device.waitNext(kTopic + "twin/update/delta", 0);
  CHECK(delta["event_id"] != "e1");
  CHECK(delta["delta"] == json{{"temperature", "25"}});
  CHECK(delta["twin"].contains("temperature"));
  CHECK_FALSE(delta["twin"].contains("mode"));  // no expected value

  // The device catches up: the document has last and current; no delta is left to send.
  r = f.device.call("twin/update", update("e2", {{"temperature", actual("25")}}),
                    "twin/update/result");
  CHECK(r["twin"]["temperature"]["actual"]["value"] == "25");
  CHECK(r["twin"]["temperature"]["metadata"]["type"] == "int");  // the stored type
  doc = f.device.waitNext(kTopic + "twin/update/document", 1);
  CHECK(doc["twin"]["temperature"]["last"]["actual"]["value"] == "21");
  CHECK(doc["twin"]["temperature"]["current"]["actual"]["value"] == "25");

  // Stored, with the edge counter of each updated side moved.
  auto twin = f.agent.storedTwin(kDev);
  REQUIRE(twin.size() == 2);
  CHECK(twin[1].name == "temperature");
  CHECK(twin[1].actual->value == "25");
  CHECK(twin[1].expected->value == "25");
  CHECK(twin[1].actualVersion == metadb::VersionVector{0, 2});
  CHECK(twin[1].expectedVersion == metadb::VersionVector{0, 1});
  CHECK(f.agent.metric("outpost_twin_updates_total{result=\"ok\"}") == 2);

  // A later unrelated update sends no delta once expected == actual everywhere.
  f.device.call("twin/update", update("e3", {{"mode", actual("boost")}}), "twin/update/result");
  f.device.waitNext(kTopic + "twin/update/document", 2);
  CHECK(f.device.on(kTopic + "twin/update/delta").size() == 1);
}

TEST_CASE("offline: twin changes are queued in the outbox, one row per device, with versions") {
  Fixture f;  // no cloud link at all: the outbox keeps everything
  f.device.call("twin/update", update("a", {{"temperature", actual("21", "int")}}),
                "twin/update/result");
  f.device.call("twin/update", update("b", {{"humidity", actual("40", "float")}}),
                "twin/update/result");
  REQUIRE(waitFor([&] { return f.agent.outboxSignals >= 2; }));
  auto rows = f.agent.outbox();
  REQUIRE(rows.size() == 1);  // coalesced
  CHECK(rows[0].kind == "twin");
  CHECK(rows[0].key == "device/default/thermo/twin/edge_updated");
  json p = json::parse(rows[0].payload);
  CHECK(p["event_id"].is_string());
  CHECK(p["timestamp"].is_number_integer());
  CHECK(p["twin"]["temperature"]["actual"]["value"] == "21");
  CHECK(p["twin"]["temperature"]["actual_version"] == json{{"cloud", 0}, {"edge", 1}});
  CHECK(p["twin"]["temperature"]["expected_version"] == json{{"cloud", 0}, {"edge", 0}});
  CHECK(p["twin"]["humidity"]["metadata"]["type"] == "float");

  // A deleted property goes to the cloud as "deleted" so the cloud hears of it.
  json r = f.device.call("twin/update", update("c", {{"humidity", nullptr}}), "twin/update/result");
  CHECK(r["twin"]["humidity"].is_null());
  REQUIRE(waitFor([&] { return f.agent.outboxSignals >= 3; }));
  p = json::parse(f.agent.outbox()[0].payload);
  CHECK(p["twin"]["humidity"]["metadata"]["type"] == "deleted");
  CHECK_FALSE(p["twin"]["humidity"].contains("actual"));
}

TEST_CASE("twin get returns the whole twin, without deleted properties") {
  Fixture f;
  f.device.call("twin/update",
                update("u", {{"temperature", actual("21", "int")}, {"mode", actual("eco")}}),
                "twin/update/result");
  json r = f.device.call("twin/update", update("d", {{"mode", nullptr}}), "twin/update/result");
  CHECK(r["twin"] == json{{"mode", nullptr}});
  json doc = f.device.waitNext(kTopic + "twin/update/document", 1);
  CHECK(doc["twin"]["mode"]["last"]["actual"]["value"] == "eco");
  CHECK(doc["twin"]["mode"]["current"].is_null());

  json got = f.device.call("twin/get", {{"event_id", "g1"}}, "twin/get/result");
  CHECK(got["event_id"] == "g1");
  CHECK(got["twin"].size() == 1);
  CHECK(got["twin"]["temperature"]["actual"]["value"] == "21");
  CHECK(got["twin"]["temperature"]["metadata"]["type"] == "int");

  // Deleting what does not exist is answered, and changes nothing.
  r = f.device.call("twin/update", update("d2", {{"nothing", nullptr}}), "twin/update/result");
  CHECK(r["twin"]["nothing"].is_null());
  CHECK_FALSE(r.contains("code"));
}

TEST_CASE("bad requests are answered 400 and unknown devices 404, with the request's event_id") {
  Fixture f;
  auto expectError = [&](const std::string& payload, int code, const std::string& eventId,
                         const std::string& reasonPart, const std::string& prefix = kTopic) {
    json r = f.device.callRaw("twin/update", payload, "twin/update/result", prefix);
    CAPTURE(payload);
    CHECK(r["code"] == code);
    CHECK(r["event_id"] == eventId);
    CHECK(r["timestamp"].is_number_integer());
    CHECK(r["reason"].get<std::string>().find(reasonPart) != std::string::npos);
    CHECK_FALSE(r.contains("twin"));
  };
  expectError("{not json", 400, "", "JSON");
  expectError(R"({"event_id":"n1"})", 400, "n1", "no twin");
  expectError(R"({"event_id":"n2","twin":{}})", 400, "n2", "no twin");
  expectError(R"({"event_id":"n3","twin":{"bad name":{"actual":{"value":"1"}}}})", 400, "n3",
              "name");
  expectError(R"({"event_id":"n4","twin":{"p":{"actual":{"value":"a b"}}}})", 400, "n4", "value");
  expectError(update("n5", {{"p", {{"actual", {{"value", std::string(513, 'v')}}}}}}).dump(), 400,
              "n5", "value");
  expectError(
      R"({"event_id":"n6","twin":{"p":{"actual":{"value":"1"},"metadata":{"type":"double"}}}})",
      400, "n6", "type");
  expectError(
      R"({"event_id":"n7","twin":{"p":{"actual":{"value":"warm"},"metadata":{"type":"int"}}}})",
      400, "n7", "not of type int");
  expectError(R"({"event_id":"n8","twin":{"p":{"actual":{"value":21}}}})", 400, "n8", "string");
  expectError(R"({"event_id":"n9","twin":{"p":"x"}})", 400, "n9", "not an object");
  expectError(R"({"event_id":"u1","twin":{"p":{"actual":{"value":"1"}}}})", 404, "u1", "ghost",
              "$hw/events/device/default/ghost/");

  // A rejected request changes nothing, even for its valid properties.
  expectError(
      R"({"event_id":"n10","twin":{"ok":{"actual":{"value":"1"}},"bad":{"actual":{"value":"!"}}}})",
      400, "n10", "bad");
  CHECK(f.agent.storedTwin(kDev).empty());
  CHECK(f.agent.outbox().empty());
  CHECK(f.agent.metric("outpost_twin_updates_total{result=\"error\"}") == 12);

  // The other requests validate too.
  json r = f.device.callRaw("twin/get", "[]", "twin/get/result");
  CHECK(r["code"] == 400);
  r = f.device.callRaw("twin/get", R"({"event_id":"g"})", "twin/get/result",
                       "$hw/events/device/default/ghost/");
  CHECK(r["code"] == 404);
  CHECK(r["event_id"] == "g");
  r = f.device.call("state/update", {{"event_id", "s"}, {"state", "sleepy"}},
                    "state/update/result");
  CHECK(r["code"] == 400);
  CHECK(r["event_id"] == "s");
  r = f.device.callRaw("state/update", R"({"event_id":"s2","state":"online"})",
                       "state/update/result", "$hw/events/device/default/ghost/");
  CHECK(r["code"] == 404);
}

TEST_CASE("a store failure is answered 500 and leaves the twin as it was") {
  Fixture f;
  f.device.call("twin/update", update("ok", {{"small", actual("1")}}), "twin/update/result");
  // No page more than the file has now: the disk is full. SQLite keeps the cap at the current size
  // when asked for less, and the store says so.
  auto capped = f.agent.store->setMaxPageCount(1);
  REQUIRE(capped.code() == core::Code::kFailedPrecondition);
  json big = json::object();
  for (int i = 0; i < 100; ++i) big["p" + std::to_string(i)] = actual(std::string(500, 'x'));
  json r = f.device.call("twin/update", update("big", big), "twin/update/result");
  CHECK(r["code"] == 500);
  CHECK(r["event_id"] == "big");
  CHECK(f.agent.storedTwin(kDev).size() == 1);
  // The service forgot what did not commit: get shows the stored twin only.
  json got = f.device.call("twin/get", {{"event_id", "g"}}, "twin/get/result");
  CHECK(got["twin"].size() == 1);

  REQUIRE(f.agent.store->setMaxPageCount(100000).isOk());  // space returns
  r = f.device.call("twin/update", update("big2", big), "twin/update/result");
  CHECK_FALSE(r.contains("code"));
  CHECK(f.agent.storedTwin(kDev).size() == 101);
}

TEST_CASE("a state update is stored, answered and queued for the cloud") {
  Fixture f;
  json r =
      f.device.call("state/update", {{"event_id", "s1"}, {"timestamp", 1}, {"state", "OnLine"}},
                    "state/update/result");
  CHECK(r["event_id"] == "s1");
  CHECK(r["device"]["name"] == "thermo");
  CHECK(r["device"]["state"] == "online");
  CHECK(r["device"]["last_online"].get<std::string>().size() == 19);
  auto stored = f.agent.reader->device(kDev);
  REQUIRE(stored->has_value());
  CHECK((*stored)->state == "online");
  REQUIRE(waitFor([&] { return f.agent.outboxSignals >= 1; }));
  auto rows = f.agent.outbox();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].kind == "devicestatus");
  CHECK(rows[0].key == "device/default/thermo/state/update");
  json content = json::parse(rows[0].payload);
  REQUIRE(content.is_string());  // the state result as a JSON string
  CHECK(json::parse(content.get<std::string>())["device"]["state"] == "online");

  json m =
      f.device.callRaw("membership/get", "{}", "membership/get/result", "$hw/events/node/edge-1/");
  CHECK(m["devices"][0]["state"] == "online");
  CHECK(m["devices"][0].contains("last_online"));
}

TEST_CASE("a desired value changed in the cloud reaches the device as document and delta") {
  Fixture f;
  f.device.call("twin/update", update("a", {{"setpoint", actual("20", "int")}}),
                "twin/update/result");
  f.agent.putDevice("thermo", kNode, {{"setpoint", "23"}});
  json delta = f.device.waitNext(kTopic + "twin/update/delta", 0);
  CHECK(delta["delta"] == json{{"setpoint", "23"}});
  CHECK(delta["twin"]["setpoint"]["expected"]["value"] == "23");
  CHECK(delta["twin"]["setpoint"]["actual"]["value"] == "20");
  CHECK(delta["twin"]["setpoint"]["metadata"]["type"] == "int");  // the twin's type is kept
  json doc = f.device.waitNext(kTopic + "twin/update/document", 1);
  CHECK(doc["twin"]["setpoint"]["last"]["actual"]["value"] == "20");
  CHECK(doc["twin"]["setpoint"]["current"]["expected"]["value"] == "23");
  auto twin = f.agent.storedTwin(kDev);
  REQUIRE(twin.size() == 1);
  CHECK(twin[0].expectedVersion == metadb::VersionVector{1, 0});

  // The same desired value again (a new resource version) changes nothing.
  f.agent.putDevice("thermo", kNode, {{"setpoint", "23"}, {"unit", "C"}});
  json delta2 = f.device.waitNext(kTopic + "twin/update/delta", 1);
  CHECK(delta2["delta"] == json({{"setpoint", "23"}, {"unit", "C"}}));
  CHECK(f.agent.storedTwin(kDev)[0].expectedVersion == metadb::VersionVector{1, 0});

  // A value the device set locally stays until the cloud changes its desired value.
  f.device.call("twin/update", update("b", {{"setpoint", {{"expected", {{"value", "19"}}}}}}),
                "twin/update/result");
  f.agent.putDevice("thermo", kNode, {{"setpoint", "23"}, {"unit", "F"}});
  REQUIRE(waitFor([&] {
    auto t = f.agent.storedTwin(kDev);
    return t.size() == 2 && t[1].expected && t[1].expected->value == "F";
  }));
  CHECK(f.agent.storedTwin(kDev)[0].expected->value == "19");
  f.agent.putDevice("thermo", kNode, {{"setpoint", "24"}, {"unit", "F"}});
  REQUIRE(waitFor([&] { return f.agent.storedTwin(kDev)[0].expected->value == "24"; }));
  CHECK(f.agent.storedTwin(kDev)[0].expectedVersion == metadb::VersionVector{2, 1});

  // A desired value that does not fit the property's type is ignored.
  f.agent.putDevice("thermo", kNode, {{"setpoint", "warm"}, {"unit", "F"}});
  f.agent.putDevice("pump", kNode, {});  // a later change, to know the first was handled
  f.device.waitNext("$hw/events/node/edge-1/membership/updated", 1);
  CHECK(f.agent.storedTwin(kDev)[0].expected->value == "24");
}

TEST_CASE("twins survive an agent restart, and changes made while it was down are applied") {
  Fixture f;
  f.device.call("twin/update",
                update("a", {{"temperature",
                              {{"actual", {{"value", "21"}}},
                               {"expected", {{"value", "22"}}},
                               {"metadata", {{"type", "int"}}}}}}),
                "twin/update/result");
  f.agent.twin->stop();
  f.agent.putDevice("thermo", kNode, {{"temperature", "24"}});  // while the twin is down
  f.agent.start();
  REQUIRE(waitFor([&] { return f.agent.connected(); }));
  CHECK(f.agent.twin->status().devices == 1);

  json delta = f.device.waitNext(kTopic + "twin/update/delta", 1);
  CHECK(delta["delta"] == json{{"temperature", "24"}});
  json got = f.device.call("twin/get", {{"event_id", "g"}}, "twin/get/result");
  CHECK(got["twin"]["temperature"]["actual"]["value"] == "21");
  CHECK(got["twin"]["temperature"]["expected"]["value"] == "24");
  CHECK(got["twin"]["temperature"]["metadata"]["type"] == "int");
  // No membership event for a device that was already a member.
  CHECK(f.device.on("$hw/events/node/edge-1/membership/updated").size() == 1);

  // A request sent while the agent was away is served from its persistent session.
  f.agent.twin->stop();
  f.device.client.publish(kTopic + "twin/update", update("away", {{"mode", actual("eco")}}).dump());
  f.agent.start();
  json r = f.device.waitNext(kTopic + "twin/update/result", 1);
  CHECK(r["event_id"] == "away");
}

TEST_CASE("after a broker restart the agent reconnects, resubscribes and answers again") {
  Fixture f;
  f.device.call("twin/update", update("a", {{"mode", actual("eco")}}), "twin/update/result");
  f.broker.stop();
  REQUIRE(waitFor([&] { return !f.agent.connected(); }));
  CHECK(f.agent.metric("outpost_twin_link_up") == 0);
  f.broker.start();
  REQUIRE(waitFor([&] { return f.agent.connected(); }));
  Device device2(f.broker.uri());  // the old client does not reconnect by itself
  json r = device2.call("twin/get", {{"event_id", "g"}}, "twin/get/result");
  CHECK(r["twin"]["mode"]["actual"]["value"] == "eco");
  CHECK(f.agent.twin->status().reconnects >= 1);
}

TEST_CASE("cloud twin updates follow the version rule; what is rejected goes back to the cloud") {
  Fixture f;
  f.device.call("twin/update", update("a", {{"setpoint", actual("20", "int")}}),
                "twin/update/result");
  REQUIRE(waitFor([&] { return f.agent.outboxSignals >= 1; }));
  auto apply = [&](const json& content) { return f.agent.applyCloudTwin(kDev, content); };
  // Newer on both counters: accepted, versions copied, the device hears of it.
  json ok = {
      {"twin",
       {{"setpoint",
         {{"expected", {{"value", "22"}}}, {"expected_version", {{"cloud", 1}, {"edge", 0}}}}}}}};
  REQUIRE(apply(ok).isOk());
  auto twin = f.agent.storedTwin(kDev);
  CHECK(twin[0].expected->value == "22");
  CHECK(twin[0].expectedVersion == metadb::VersionVector{1, 0});
  json delta = f.device.waitNext(kTopic + "twin/update/delta", 0);
  CHECK(delta["delta"] == json{{"setpoint", "22"}});

  // The edge changed actual (edge = 2 now): a cloud actual that has not seen it is rejected, and
  // the edge's twin is queued again.
  f.device.call("twin/update", update("b", {{"setpoint", actual("21")}}), "twin/update/result");
  auto rowsBefore = f.agent.outbox();
  REQUIRE(rowsBefore.size() == 1);
  int signals = f.agent.outboxSignals;
  json stale = {
      {"twin",
       {{"setpoint",
         {{"actual", {{"value", "99"}}}, {"actual_version", {{"cloud", 0}, {"edge", 1}}}}}}}};
  REQUIRE(apply(stale).isOk());
  CHECK(f.agent.storedTwin(kDev)[0].actual->value == "21");
  CHECK(waitFor([&] { return f.agent.outboxSignals > signals; }));
  auto rows = f.agent.outbox();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].ref.generation > rowsBefore[0].ref.generation);
  CHECK(json::parse(rows[0].payload)["twin"]["setpoint"]["actual"]["value"] == "21");

  // Without versions: rejected.
  json bare = {{"twin", {{"setpoint", {{"expected", {{"value", "30"}}}}}}}};
  REQUIRE(apply(bare).isOk());
  CHECK(f.agent.storedTwin(kDev)[0].expected->value == "22");

  // Unknown device.
  CHECK(f.agent.applyCloudTwin("default/ghost", ok).code() == core::Code::kNotFound);
}

TEST_CASE("with one-segment device ids (KubeEdge up to 1.16) topics name the device alone") {
  TempDir dir;
  Mosquitto broker;
  Agent agent(dir, broker.uri(), twin::DeviceIdForm::kName);
  Device device(broker.uri());
  agent.start();
  REQUIRE(waitFor([&] { return agent.connected(); }));
  agent.putDevice("thermo", kNode, {});
  auto m = device.waitNext("$hw/events/node/edge-1/membership/updated", 0);
  CHECK(m["added_devices"][0]["id"] == "thermo");
  json r = device.callRaw("twin/update", update("e", {{"p", actual("1")}}).dump(),
                          "twin/update/result", "$hw/events/device/thermo/");
  CHECK(r["twin"]["p"]["actual"]["value"] == "1");
  r = device.callRaw("twin/get", R"({"event_id":"g"})", "twin/get/result",
                     "$hw/events/device/thermo/");
  CHECK(r["twin"]["p"]["actual"]["value"] == "1");
}

// Issue 17, item 4: switching device_id_form used to drop the twin's stored values (the device
// was bound anew under its new id and the old one unbound with its rows).
TEST_CASE("a change of device id form keeps each device's twin, and the cloud hears it anew") {
  Fixture f;
  f.device.call("twin/update",
                update("a", {{"temperature",
                              {{"actual", {{"value", "21"}}},
                               {"expected", {{"value", "22"}}},
                               {"metadata", {{"type", "int"}}}}}}),
                "twin/update/result");
  const std::string byName = "$hw/events/device/thermo/";
  f.agent.twin->stop();
  f.agent.options.deviceIdForm = twin::DeviceIdForm::kName;
  f.agent.start();
  REQUIRE(waitFor([&] { return f.agent.connected(); }));
  CHECK(f.agent.twin->status().devices == 1);
  json got = f.device.callRaw("twin/get", R"({"event_id":"g1"})", "twin/get/result", byName);
  CHECK(got["twin"]["temperature"]["actual"]["value"] == "21");
  CHECK(got["twin"]["temperature"]["expected"]["value"] == "22");
  CHECK(got["twin"]["temperature"]["metadata"]["type"] == "int");
  CHECK(f.agent.storedTwin(kDev).empty());
  CHECK(f.agent.storedTwin("thermo").size() == 1);
  bool queued = false;
  for (const auto& e : f.agent.outbox())
    if (e.kind == "twin" && e.key == "device/thermo/twin/edge_updated") queued = true;
  CHECK(queued);

  // And back: the namespace comes from the Device object.
  f.agent.twin->stop();
  f.agent.options.deviceIdForm = twin::DeviceIdForm::kNamespaced;
  f.agent.start();
  REQUIRE(waitFor([&] { return f.agent.connected(); }));
  got = f.device.call("twin/get", {{"event_id", "g2"}}, "twin/get/result");
  CHECK(got["twin"]["temperature"]["actual"]["value"] == "21");
  CHECK(f.agent.storedTwin("thermo").empty());
  CHECK(f.agent.twin->status().devices == 1);
}

TEST_CASE("the cloud's membership update carries twins of bound devices; other forms are refused") {
  Fixture f;
  auto versioned = [](const std::string& value, int64_t cloud) {
    return json{{"expected", {{"value", value}}},
                {"expected_version", {{"cloud", cloud}, {"edge", 0}}}};
  };
  // KubeEdge 1.14 names the device alone; the one bound device of that name takes it. A device
  // no Device object binds here is skipped.
  json membership = {
      {"added_devices", json::array({{{"id", "thermo"}, {"twin", {{"mode", versioned("eco", 1)}}}},
                                     {{"id", "ghost"}, {"twin", {{"mode", versioned("x", 1)}}}}})},
      {"removed_devices", nullptr}};
  CHECK(f.agent.applyCloud("membership", "update", json(membership.dump()).dump()).isOk());
  auto twin = f.agent.storedTwin(kDev);
  REQUIRE(twin.size() == 1);
  CHECK(twin[0].expected->value == "eco");
  CHECK(f.device.waitNext(kTopic + "twin/update/delta", 0)["delta"] == json{{"mode", "eco"}});
  // cloud_updated with the one-segment name, too.
  CHECK(f.agent.applyCloudTwin("thermo", {{"twin", {{"mode", versioned("boost", 2)}}}}).isOk());
  CHECK(f.agent.storedTwin(kDev)[0].expected->value == "boost");

  CHECK(f.agent.applyCloud("membership", "delete", membership.dump()).code() ==
        core::Code::kInvalidArgument);
  CHECK(f.agent.applyCloud("device/default/thermo/twin/edge_updated", "update", "{}").code() ==
        core::Code::kInvalidArgument);
  CHECK(f.agent.applyCloud("membership", "update", "[]").code() == core::Code::kInvalidArgument);
  CHECK(f.agent.storedTwin(kDev)[0].expected->value == "boost");
  f.agent.logging.flush();
  CHECK(readFile(f.agent.logPath).find("cloud delete of membership not applied") !=
        std::string::npos);
}
