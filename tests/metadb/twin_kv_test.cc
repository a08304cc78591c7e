// Devices, twin properties and key-values.

#include <doctest/doctest.h>

#include "store_fixture.h"

using namespace outpost;
using namespace outpost::metadb;
using namespace outpost::metadb::test;

namespace {
Device thermostat() {
  Device d;
  d.id = "default/thermostat";
  d.name = "thermostat";
  d.state = "online";
  d.lastOnline = "2024-05-01 10:00:00";
  d.model = "thermo-model";
  d.object = R"({"kind":"Device"})";
  return d;
}

TwinProperty temperature() {
  TwinProperty p;
  p.name = "temperature";
  p.type = "int";
  p.optional = false;
  p.expected = TwinValue{"21", 1000};
  p.actual = TwinValue{"19", 2000};
  p.expectedVersion = {3, 1};
  p.actualVersion = {0, 7};
  return p;
}
}  // namespace

TEST_CASE("a device and its twin are stored and read back whole") {
  StoreFixture f;
  f.open();
  TwinProperty mode;
  mode.name = "mode";
  mode.type = "string";
  mode.actual = TwinValue{"", 5};  // the empty value is a value
  f.writeOk(WriteBatch().updateDevice(
      {"default/thermostat", false, thermostat(), {temperature(), mode}, {}}));

  auto reader = f.reader();
  auto d = *reader->device("default/thermostat");
  REQUIRE(d.has_value());
  CHECK(d->name == "thermostat");
  CHECK(d->state == "online");
  CHECK(d->lastOnline == "2024-05-01 10:00:00");
  CHECK(d->object == R"({"kind":"Device"})");
  auto twin = *reader->twin("default/thermostat");
  REQUIRE(twin.size() == 2);
  CHECK(twin[0] == mode);
  CHECK_FALSE(twin[0].expected.has_value());
  CHECK(twin[1] == temperature());
  CHECK(reader->devices()->size() == 1);
}

TEST_CASE("a twin update for an unknown device fails with not found and writes nothing") {
  StoreFixture f;
  f.open();
  auto r =
      f.write(WriteBatch()
                  .updateDevice({"default/thermostat", false, thermostat(), {}, {}})
                  .updateDevice({"default/unknown", false, std::nullopt, {temperature()}, {}}));
  CHECK(r.status().code() == core::Code::kNotFound);
  CHECK(r.status().message().find("default/unknown") != std::string::npos);
  CHECK(f.reader()->devices()->empty());
}

TEST_CASE("properties and devices can be removed, and a removed device takes its twin along") {
  StoreFixture f;
  f.open();
  TwinProperty other = temperature();
  other.name = "humidity";
  f.writeOk(WriteBatch().updateDevice(
      {"default/thermostat", false, thermostat(), {temperature(), other}, {}}));
  auto reader = f.reader();

  TwinProperty changed = temperature();
  changed.actual = TwinValue{"22", 3000};
  changed.actualVersion = {0, 8};
  f.writeOk(WriteBatch().updateDevice(
      {"default/thermostat", false, std::nullopt, {changed}, {"humidity"}}));
  auto twin = *reader->twin("default/thermostat");
  REQUIRE(twin.size() == 1);
  CHECK(twin[0] == changed);

  f.writeOk(WriteBatch().updateDevice({"default/thermostat", true, std::nullopt, {}, {}}));
  CHECK_FALSE(reader->device("default/thermostat")->has_value());
  CHECK(reader->twin("default/thermostat")->empty());
}

TEST_CASE("device changes are announced on the bus") {
  StoreFixture f;
  f.open();
  std::atomic<int> seen{0};
  auto sub = f.bus.subscribe(kKeysChanged, f.caller, [&](const KeysChanged& e) {
    if (e.devices == std::vector<std::string>{"default/thermostat"}) ++seen;
  });
  f.writeOk(WriteBatch().updateDevice({"default/thermostat", false, thermostat(), {}, {}}));
  CHECK(outpost::test::waitFor([&] { return seen == 1; }));
}

TEST_CASE("key-values are put, overwritten and erased") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().putKv("node.name", "edge-1").putKv("sync.mark", "41"));
  f.writeOk(WriteBatch().putKv("sync.mark", "42").eraseKv("node.name"));
  auto reader = f.reader();
  CHECK(*reader->getKv("sync.mark") == "42");
  CHECK_FALSE(reader->getKv("node.name")->has_value());
  CHECK_FALSE(reader->getKv(kKvNeedsFullResync)->has_value());
}
