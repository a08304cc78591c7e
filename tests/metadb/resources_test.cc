// Desired resources: versions only move forward, deletes stick, batches are atomic, commits are
// grouped.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "store_fixture.h"

using namespace outpost;
using namespace outpost::metadb;
using namespace outpost::metadb::test;
using namespace std::chrono_literals;
using outpost::test::waitFor;

TEST_CASE(
    "a newer resource version is applied; an older or equal one is stale and changes nothing") {
  StoreFixture f;
  f.open();
  auto r = f.writeOk(WriteBatch().apply(upsert("default/pod/web", "10", R"({"v":10})")));
  CHECK(r.changes == std::vector{ApplyOutcome::kApplied});

  r = f.writeOk(WriteBatch()
                    .apply(upsert("default/pod/web", "9", R"({"v":9})"))
                    .apply(upsert("default/pod/web", "10", R"({"v":"10 again"})"))
                    .apply(upsert("default/pod/web", "11", R"({"v":11})")));
  CHECK(r.changes ==
        std::vector{ApplyOutcome::kStale, ApplyOutcome::kStale, ApplyOutcome::kApplied});

  auto got = f.reader()->get("default/pod/web");
  REQUIRE(got.isOk());
  REQUIRE(got->has_value());
  const Resource& res = **got;
  CHECK(res.version == 11);
  CHECK(res.object == R"({"v":11})");
  CHECK(res.ns == "default");
  CHECK(res.type == "pod");
  CHECK(res.name == "web");
  CHECK(res.origin == "cloud");
  CHECK(res.updated == f.clock.wallNow());
}

TEST_CASE("versions compare as integers, not as strings") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/a", "9")));
  auto r = f.writeOk(WriteBatch().apply(upsert("default/pod/a", "10")));
  CHECK(r.changes == std::vector{ApplyOutcome::kApplied});
  r = f.writeOk(WriteBatch().apply(upsert("default/pod/a", "0000000009")));
  CHECK(r.changes == std::vector{ApplyOutcome::kStale});
}

TEST_CASE("a deleted object is gone and a late resend of an older version does not bring it back") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/web", "5")));
  auto r = f.writeOk(WriteBatch().apply(remove("default/pod/web", "6")));
  CHECK(r.changes == std::vector{ApplyOutcome::kDeleted});
  auto reader = f.reader();
  CHECK_FALSE(reader->get("default/pod/web")->has_value());

  // The cloud resends the insert it had not seen acknowledged, and the delete itself.
  r = f.writeOk(WriteBatch()
                    .apply(upsert("default/pod/web", "5"))
                    .apply(upsert("default/pod/web", "6"))
                    .apply(remove("default/pod/web", "6")));
  CHECK(r.changes ==
        std::vector{ApplyOutcome::kStale, ApplyOutcome::kStale, ApplyOutcome::kDeleted});
  CHECK_FALSE(reader->get("default/pod/web")->has_value());
  CHECK(reader->list("pod")->empty());

  // A genuinely newer object under the same key is a new object.
  r = f.writeOk(WriteBatch().apply(upsert("default/pod/web", "7", R"({"again":true})")));
  CHECK(r.changes == std::vector{ApplyOutcome::kApplied});
  CHECK((*reader->get("default/pod/web"))->object == R"({"again":true})");
}

TEST_CASE("deleting a key never stored answers deleted and still blocks older inserts") {
  StoreFixture f;
  f.open();
  auto r = f.writeOk(WriteBatch().apply(remove("default/configmap/cfg", "20")));
  CHECK(r.changes == std::vector{ApplyOutcome::kDeleted});
  r = f.writeOk(WriteBatch().apply(upsert("default/configmap/cfg", "19")));
  CHECK(r.changes == std::vector{ApplyOutcome::kStale});
  CHECK_FALSE(f.reader()->get("default/configmap/cfg")->has_value());
}

TEST_CASE("a delete without a version deletes whatever is stored") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/web", "5")));
  auto r = f.writeOk(WriteBatch().apply(remove("default/pod/web", "")));
  CHECK(r.changes == std::vector{ApplyOutcome::kDeleted});
  CHECK_FALSE(f.reader()->get("default/pod/web")->has_value());
  r = f.writeOk(WriteBatch().apply(upsert("default/pod/web", "5")));
  CHECK(r.changes == std::vector{ApplyOutcome::kStale});
}

TEST_CASE("a batch that fails midway leaves nothing of itself behind") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch().apply(upsert("default/pod/keep", "1", "old")));
  auto r = f.write(WriteBatch()
                       .apply(upsert("default/pod/keep", "2", "new"))
                       .apply(upsert("default/pod/other", "1"))
                       .enqueue({"ack", "default/pod/other", "OK", 0})
                       .putKv("mark", "x")
                       .apply(upsert("default/pod/bad", "v12")));
  REQUIRE_FALSE(r.isOk());
  CHECK(r.status().code() == core::Code::kInvalidArgument);
  CHECK(r.status().message().find("default/pod/bad") != std::string::npos);
  CHECK(r.status().message().find("v12") != std::string::npos);

  auto reader = f.reader();
  CHECK((*reader->get("default/pod/keep"))->object == "old");
  CHECK_FALSE(reader->get("default/pod/other")->has_value());
  CHECK(reader->outboxStats()->rows == 0);
  CHECK_FALSE(reader->getKv("mark")->has_value());
}

TEST_CASE("keys that are not <namespace>/<type>/<name> are rejected") {
  StoreFixture f;
  f.open();
  for (const char* key : {"node", "default/pod", "default/pod/", "default//x"}) {
    auto r = f.write(WriteBatch().apply(upsert(key, "1")));
    CHECK_MESSAGE(r.status().code() == core::Code::kInvalidArgument, key);
  }
  auto r = f.writeOk(WriteBatch().apply(upsert("/node/edge-1", "1")));  // cluster-scoped
  CHECK(r.changes == std::vector{ApplyOutcome::kApplied});
  CHECK((*f.reader()->get("/node/edge-1"))->name == "edge-1");
}

TEST_CASE("one caller's failing batch does not affect the others committed in the same group") {
  StoreFixture f;
  f.options.commitWindow = 1h;  // nothing commits until flush(): all four share one transaction
  f.options.maxBatch = 1000;
  f.open();
  double commitsBefore = f.metric("outpost_store_commits_total");
  auto a = f.writeAsync(WriteBatch().apply(upsert("default/pod/a", "1")));
  auto bad = f.writeAsync(
      WriteBatch().apply(upsert("default/pod/b", "1")).apply(upsert("default/pod/c", "x")));
  auto d = f.writeAsync(WriteBatch().apply(upsert("default/pod/d", "1")));
  DeviceUpdate forUnknown;
  forUnknown.deviceId = "no-such-device";
  forUnknown.removeProperties = {"p"};
  auto unknown = f.writeAsync(WriteBatch().updateDevice(forUnknown));
  f.store->flush();

  CHECK(StoreFixture::wait(a).isOk());
  CHECK(StoreFixture::wait(bad).status().code() == core::Code::kInvalidArgument);
  CHECK(StoreFixture::wait(d).isOk());
  CHECK(StoreFixture::wait(unknown).status().code() == core::Code::kNotFound);
  CHECK(f.metric("outpost_store_commits_total") == commitsBefore + 1);
  auto keys = *f.reader()->list("pod");
  REQUIRE(keys.size() == 2);
  CHECK(keys[0].key == "default/pod/a");
  CHECK(keys[1].key == "default/pod/d");
  CHECK(f.metric("outpost_store_write_errors_total{code=\"INVALID_ARGUMENT\"}") == 1);
}

TEST_CASE("writes from many threads are committed in far fewer transactions than writes") {
  StoreFixture f;
  f.open();
  constexpr int kThreads = 4, kEach = 100;
  std::atomic<int> ok{0}, failed{0};
  double commitsBefore = f.metric("outpost_store_commits_total");
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string key = "default/pod/t" + std::to_string(t) + "-" + std::to_string(i);
        f.store->write(WriteBatch().apply(upsert(key, "1")), f.caller,
                       [&](core::Result<WriteResult> r) { (r.isOk() ? ok : failed)++; });
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(waitFor([&] { return ok + failed == kThreads * kEach; }, 30s));
  CHECK(failed == 0);
  CHECK(f.reader()->list("pod")->size() == kThreads * kEach);
  double commits = f.metric("outpost_store_commits_total") - commitsBefore;
  MESSAGE((kThreads * kEach), " writes in ", commits, " commits");
  CHECK(commits < kThreads * kEach / 4);
  CHECK(f.metric("outpost_store_rows_written_total") == kThreads * kEach);
}

TEST_CASE("a completion runs on the caller's loop and only once the data is committed") {
  StoreFixture f;
  f.open();
  auto reader = f.reader();  // used only on the caller loop below
  std::atomic<bool> done{false}, onCaller{false}, visible{false};
  f.store->write(WriteBatch().apply(upsert("default/pod/web", "1")), f.caller,
                 [&](core::Result<WriteResult> r) {
                   onCaller = f.caller.isInLoopThread();
                   auto got = reader->get("default/pod/web");
                   visible = r.isOk() && got.isOk() && got->has_value();
                   done = true;
                 });
  REQUIRE(waitFor([&] { return done.load(); }));
  CHECK(onCaller);
  CHECK(visible);
}

TEST_CASE("each commit that changes resources publishes the changed keys on the bus") {
  StoreFixture f;
  f.open();
  std::mutex mu;
  std::vector<KeysChanged> events;
  auto sub = f.bus.subscribe(kKeysChanged, f.caller, [&](const KeysChanged& e) {
    std::lock_guard l(mu);
    events.push_back(e);
  });
  auto count = [&] {
    std::lock_guard l(mu);
    return events.size();
  };
  f.writeOk(WriteBatch().apply(upsert("default/pod/a", "1")).apply(upsert("ns2/secret/s", "1")));
  REQUIRE(waitFor([&] { return count() == 1; }));
  f.writeOk(WriteBatch().apply(upsert("default/pod/a", "1")));  // stale: nothing changed
  f.writeOk(WriteBatch().apply(remove("default/pod/a", "2")).apply(remove("x/pod/never", "1")));
  REQUIRE(waitFor([&] { return count() == 2; }));
  REQUIRE(f.caller.runSync([] {}));
  std::lock_guard l(mu);
  REQUIRE(events.size() == 2);
  REQUIRE(events[0].keys.size() == 2);
  CHECK(events[0].keys[0].key == "default/pod/a");
  CHECK(events[0].keys[0].type == "pod");
  CHECK(events[0].keys[0].name == "a");
  CHECK_FALSE(events[0].keys[0].deleted);
  CHECK(events[0].keys[1].ns == "ns2");
  CHECK(events[0].keys[1].type == "secret");
  CHECK(events[0].keys[1].name == "s");
  REQUIRE(events[1].keys.size() == 1);  // deleting an absent key changes nothing anyone sees
  CHECK(events[1].keys[0].key == "default/pod/a");
  CHECK(events[1].keys[0].deleted);
}

TEST_CASE("objects are listed by type, by type and namespace, and by key prefix, in key order") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch()
                .apply(upsert("kube-system/pod/dns", "1"))
                .apply(upsert("default/pod/web", "1"))
                .apply(upsert("default/pod/api", "1"))
                .apply(upsert("default/configmap/cfg", "1"))
                .apply(upsert("default/pod/gone", "1")));
  f.writeOk(WriteBatch().apply(remove("default/pod/gone", "2")));
  auto reader = f.reader();
  auto keys = [](const std::vector<Resource>& rs) {
    std::vector<std::string> out;
    for (const auto& r : rs) out.push_back(r.key);
    return out;
  };
  CHECK(keys(*reader->list("pod")) ==
        std::vector<std::string>{"default/pod/api", "default/pod/web", "kube-system/pod/dns"});
  CHECK(keys(*reader->list("pod", "default")) ==
        std::vector<std::string>{"default/pod/api", "default/pod/web"});
  CHECK(keys(*reader->listPrefix("default/")) ==
        std::vector<std::string>{"default/configmap/cfg", "default/pod/api", "default/pod/web"});
  CHECK(keys(*reader->listPrefix("")).size() == 4);
  CHECK(reader->listPrefix("nothing/")->empty());
}

TEST_CASE("tombstones are forgotten after the retention, measured on the store's clock") {
  StoreFixture f;
  f.options.tombstoneRetention = 1h;
  f.open();
  f.writeOk(WriteBatch().apply(remove("default/pod/web", "6")));
  f.clock.advance(59min);
  REQUIRE(f.store->pruneTombstones().isOk());
  CHECK(f.writeOk(WriteBatch().apply(upsert("default/pod/web", "5"))).changes ==
        std::vector{ApplyOutcome::kStale});
  f.clock.advance(2min);
  REQUIRE(f.store->pruneTombstones().isOk());
  // Past the retention the cloud has long had its ack; an old version is then accepted as new.
  CHECK(f.writeOk(WriteBatch().apply(upsert("default/pod/web", "5"))).changes ==
        std::vector{ApplyOutcome::kApplied});
}

TEST_CASE(
    "a delete without a version withdraws only its origin's copy: a newer object of another "
    "origin (a group's over the node's own) stays") {
  StoreFixture f;
  f.open();
  auto from = [](ResourceChange c, const std::string& origin) {
    c.origin = origin;
    return c;
  };
  auto withdraw = [&](const std::string& key, const std::string& origin) {
    return from(remove(key, ""), origin);
  };
  // The node's own copy (a rollout's wave), then the group's newer one: the group's wins.
  f.writeOk(WriteBatch().apply(from(upsert("default/pod/web", "5", R"({"v":5})"), "mqtt:node")));
  f.writeOk(WriteBatch().apply(from(upsert("default/pod/web", "7", R"({"v":7})"), "mqtt:group:g")));
  // The node's copy withdrawn (its retained message cleared): the group's object stays.
  auto r = f.writeOk(WriteBatch().apply(withdraw("default/pod/web", "mqtt:node")));
  CHECK(r.changes == std::vector{ApplyOutcome::kStale});
  auto got = f.reader()->get("default/pod/web");
  REQUIRE(got->has_value());
  CHECK((*got)->object == R"({"v":7})");
  CHECK((*got)->origin == "mqtt:group:g");

  // Withdrawn by the origin it came from, it goes.
  r = f.writeOk(WriteBatch().apply(withdraw("default/pod/web", "mqtt:group:g")));
  CHECK(r.changes == std::vector{ApplyOutcome::kDeleted});
  CHECK_FALSE(f.reader()->get("default/pod/web")->has_value());

  // The node's own object withdrawn by the node: gone, as before.
  f.writeOk(WriteBatch().apply(from(upsert("default/pod/db", "3"), "mqtt:node")));
  r = f.writeOk(WriteBatch().apply(withdraw("default/pod/db", "mqtt:node")));
  CHECK(r.changes == std::vector{ApplyOutcome::kDeleted});
  CHECK_FALSE(f.reader()->get("default/pod/db")->has_value());
}
