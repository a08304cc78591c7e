// The outbox: coalescing per (kind, key), send order, acks, back-off, quota, drop counting, and
// the signal a commit that changed it publishes.

#include <doctest/doctest.h>

#include <mutex>
#include <vector>

#include "store_fixture.h"

using namespace outpost;
using namespace outpost::metadb;
using namespace outpost::metadb::test;
using outpost::test::waitFor;
using namespace std::chrono_literals;

namespace {
std::vector<std::string> dueKeys(StoreReader& r, size_t limit = 100) {
  std::vector<std::string> out;
  auto due = r.outboxDue(limit);
  REQUIRE(due.isOk());
  for (const auto& e : *due) out.push_back(e.key + "=" + e.payload);
  return out;
}
}  // namespace

TEST_CASE("outbox items come out highest priority first, then in the order they were queued") {
  StoreFixture f;
  f.open();
  f.writeOk(WriteBatch()
                .enqueue({"podpatch", "a", "1", 0})
                .enqueue({"podpatch", "b", "1", 5})
                .enqueue({"podpatch", "c", "1", 0})
                .enqueue({"ack", "d", "1", 5}));
  auto reader = f.reader();
  CHECK(dueKeys(*reader) == std::vector<std::string>{"b=1", "d=1", "a=1", "c=1"});
  CHECK(dueKeys(*reader, 3).size() == 3);
  auto stats = *reader->outboxStats();
  CHECK(stats.rows == 4);
  CHECK(stats.bytes == 4);
  CHECK(f.metric("outpost_outbox_rows") == 4);
}

TEST_CASE("a newer item for the same kind and key replaces the unsent one and keeps its place") {
  StoreFixture f;
  f.open();
  auto first = f.writeOk(WriteBatch().enqueue({"podpatch", "default/web", "Pending", 0}));
  f.writeOk(WriteBatch().enqueue({"podpatch", "default/api", "Running", 0}));
  auto second = f.writeOk(WriteBatch().enqueue({"podpatch", "default/web", "Running!", 0}));
  f.writeOk(WriteBatch().enqueue({"event", "default/web", "other kind", 0}));

  CHECK(second.enqueued[0].id == first.enqueued[0].id);
  CHECK(second.enqueued[0].generation == first.enqueued[0].generation + 1);
  auto reader = f.reader();
  CHECK(dueKeys(*reader) == std::vector<std::string>{"default/web=Running!", "default/api=Running",
                                                     "default/web=other kind"});
  auto stats = *reader->outboxStats();
  CHECK(stats.rows == 3);
  CHECK(stats.bytes == 8 + 7 + 10);
}

TEST_CASE("acking an item deletes it, but acking one that was replaced meanwhile keeps the newer") {
  StoreFixture f;
  f.open();
  auto sent = f.writeOk(WriteBatch().enqueue({"podpatch", "default/web", "v1", 0})).enqueued[0];
  // While v1 is on the wire, a newer status replaces it.
  auto newer = f.writeOk(WriteBatch().enqueue({"podpatch", "default/web", "v2", 0})).enqueued[0];
  auto r = f.writeOk(WriteBatch().ack(sent));
  CHECK(r.acked == std::vector<bool>{false});
  auto reader = f.reader();
  CHECK(dueKeys(*reader) == std::vector<std::string>{"default/web=v2"});

  r = f.writeOk(WriteBatch().ack(newer).ack(newer));
  CHECK(r.acked == std::vector<bool>{true, false});
  CHECK(reader->outboxDue(10)->empty());
  CHECK_FALSE(reader->outboxNextAttempt()->has_value());
  CHECK(reader->outboxStats()->bytes == 0);
}

TEST_CASE("a row is in the outbox from its enqueue to its ack, sent or not, and only its kind") {
  StoreFixture f;
  f.open();
  auto reader = f.reader();
  CHECK_FALSE(*reader->outboxHas("podstatus", "default/pod/web"));
  auto sent =
      f.writeOk(WriteBatch().enqueue({"podstatus", "default/pod/web", "v1", 0})).enqueued[0];
  CHECK(*reader->outboxHas("podstatus", "default/pod/web"));
  CHECK_FALSE(*reader->outboxHas("poddelete", "default/pod/web"));
  CHECK_FALSE(*reader->outboxHas("podstatus", "default/pod/we"));
  // Put back after a failed send: still there, though not due.
  f.writeOk(WriteBatch().retryLater(sent));
  CHECK(reader->outboxDue(10)->empty());
  CHECK(*reader->outboxHas("podstatus", "default/pod/web"));
  f.writeOk(WriteBatch().ack(sent));
  CHECK_FALSE(*reader->outboxHas("podstatus", "default/pod/web"));
}

TEST_CASE("a failed send is retried after an exponential back-off on the store's clock") {
  StoreFixture f;
  f.options.outboxRetryInitial = 1s;
  f.options.outboxRetryMax = 4s;
  f.open();
  auto reader = f.reader();
  auto ref = f.writeOk(WriteBatch().enqueue({"podpatch", "k", "p", 0})).enqueued[0];
  const auto start = f.clock.wallNow();
  CHECK(*reader->outboxNextAttempt() == start);

  std::vector<std::chrono::seconds> waits;
  for (int attempt = 0; attempt < 5; ++attempt) {
    REQUIRE(reader->outboxDue(10)->size() == 1);
    CHECK(f.writeOk(WriteBatch().retryLater(ref)).retried == std::vector<bool>{true});
    CHECK(reader->outboxDue(10)->empty());
    auto next = reader->outboxNextAttempt()->value();
    waits.push_back(std::chrono::duration_cast<std::chrono::seconds>(next - f.clock.wallNow()));
    f.clock.advance(next - f.clock.wallNow());
  }
  CHECK(waits == std::vector<std::chrono::seconds>{1s, 2s, 4s, 4s, 4s});
  auto due = *reader->outboxDue(10);
  REQUIRE(due.size() == 1);
  CHECK(due[0].attempts == 5);

  // A new payload for the row starts over: sent at once, attempts reset.
  f.writeOk(WriteBatch().retryLater(ref));
  auto newer = f.writeOk(WriteBatch().enqueue({"podpatch", "k", "p2", 0})).enqueued[0];
  due = *reader->outboxDue(10);
  REQUIRE(due.size() == 1);
  CHECK(due[0].attempts == 0);
  CHECK(due[0].ref == newer);
  CHECK(f.writeOk(WriteBatch().retryLater(ref)).retried == std::vector<bool>{false});
}

TEST_CASE("past the row quota the oldest lowest-priority rows are dropped and counted") {
  StoreFixture f;
  f.options.outboxMaxRows = 3;
  f.open();
  f.writeOk(WriteBatch()
                .enqueue({"status", "important-old", "x", 5})
                .enqueue({"status", "low-old", "x", 0})
                .enqueue({"status", "low-new", "x", 0}));
  auto r = f.writeOk(WriteBatch().enqueue({"status", "newest", "x", 0}));
  CHECK(r.outboxDropped == 1);
  auto reader = f.reader();
  CHECK(dueKeys(*reader) == std::vector<std::string>{"important-old=x", "low-new=x", "newest=x"});

  // Even at the lowest priority, the row just queued survives; higher ones go when nothing is
  // lower.
  r = f.writeOk(
      WriteBatch().enqueue({"status", "lowest", "x", -1}).enqueue({"status", "z", "x", -1}));
  CHECK(r.outboxDropped == 2);
  CHECK(dueKeys(*reader) == std::vector<std::string>{"important-old=x", "newest=x", "z=x"});
  CHECK(reader->outboxStats()->dropped == 3);
  CHECK(f.metric("outpost_outbox_dropped_total") == 3);
  CHECK(f.metric("outpost_outbox_rows") == 3);

  // Replacing a row does not grow the outbox, so nothing is dropped.
  r = f.writeOk(WriteBatch().enqueue({"status", "newest", "y", 0}));
  CHECK(r.outboxDropped == 0);
}

TEST_CASE("past the byte quota rows are dropped until the payloads fit, and a huge new row stays") {
  StoreFixture f;
  f.options.outboxMaxBytes = 100;
  f.open();
  f.writeOk(WriteBatch()
                .enqueue({"s", "a", std::string(40, 'a'), 0})
                .enqueue({"s", "b", std::string(40, 'b'), 0}));
  auto r = f.writeOk(WriteBatch().enqueue({"s", "c", std::string(40, 'c'), 0}));
  CHECK(r.outboxDropped == 1);
  auto reader = f.reader();
  CHECK(reader->outboxStats()->bytes == 80);
  CHECK(f.metric("outpost_outbox_bytes") == 80);

  r = f.writeOk(WriteBatch().enqueue({"s", "huge", std::string(500, 'h'), 0}));
  CHECK(r.outboxDropped == 2);
  auto due = *reader->outboxDue(10);
  REQUIRE(due.size() == 1);
  CHECK(due[0].key == "huge");
}

TEST_CASE("the count of dropped outbox rows survives a restart") {
  StoreFixture f;
  f.options.outboxMaxRows = 1;
  f.open();
  f.writeOk(WriteBatch().enqueue({"s", "a", "x", 0}).enqueue({"s", "b", "x", 0}));
  f.reopen();
  f.writeOk(WriteBatch().enqueue({"s", "c", "x", 0}));
  CHECK(f.reader()->outboxStats()->dropped == 2);
  CHECK(*f.reader()->getKv(kKvOutboxDropped) == "2");
}

TEST_CASE("outbox rows and their back-off survive a restart") {
  StoreFixture f;
  f.open();
  auto ref = f.writeOk(WriteBatch().enqueue({"s", "a", "payload", 3})).enqueued[0];
  f.writeOk(WriteBatch().retryLater(ref));
  f.reopen();
  auto reader = f.reader();
  CHECK(reader->outboxDue(10)->empty());
  f.clock.advance(1s);
  auto due = *reader->outboxDue(10);
  REQUIRE(due.size() == 1);
  CHECK(due[0].ref == ref);
  CHECK(due[0].payload == "payload");
  CHECK(due[0].priority == 3);
  CHECK(due[0].attempts == 1);
}

namespace {

// The outbox signals a store publishes, as a subscriber on the caller's loop receives them.
struct OutboxSignals {
  explicit OutboxSignals(StoreFixture& f)
      : sub(f.bus.subscribe(kOutboxChanged, f.caller, [this](const OutboxChanged& e) {
          std::lock_guard l(mu);
          events.push_back(e);
        })) {}
  std::vector<OutboxChanged> all() {
    std::lock_guard l(mu);
    return events;
  }
  std::mutex mu;
  std::vector<OutboxChanged> events;
  core::Subscription sub;
};

}  // namespace

// A write's completion is posted to its loop after the commit's signal, so once a write returned
// every signal of it and of earlier commits has reached a subscriber on the same loop.
TEST_CASE(
    "a commit that changed outbox rows says so once on the bus; one that did not says nothing") {
  StoreFixture f;
  f.open();
  OutboxSignals signals(f);

  auto queued = f.writeOk(WriteBatch()
                              .enqueue({"podpatch", "a", "1", 0})
                              .enqueue({"podpatch", "b", "1", 0})
                              .enqueue({"podpatch", "c", "1", 0}));
  REQUIRE(waitFor([&] { return !signals.all().empty(); }));
  auto events = signals.all();
  REQUIRE(events.size() == 1);  // one signal for the commit, not one per row
  CHECK(events[0].queued == 3);
  CHECK(events[0].acked == 0);

  // Resources, twins and key-values are not the outbox.
  f.writeOk(WriteBatch().apply(upsert("default/pod/p", "1")).putKv("k", "v"));
  // A batch that fails leaves nothing behind, and says nothing.
  auto failed = f.write(WriteBatch().enqueue({"podpatch", "d", "1", 0}).enqueue({"", "e", "1", 0}));
  CHECK_FALSE(failed.isOk());
  // An ack of a row replaced since it was read changes no row.
  auto replaced = f.writeOk(WriteBatch().enqueue({"podpatch", "a", "2", 0})).enqueued[0];
  REQUIRE(waitFor([&] { return signals.all().size() >= 2; }));
  f.writeOk(WriteBatch().ack(queued.enqueued[0]));
  CHECK(signals.all().size() == 2);

  f.writeOk(WriteBatch().ack(replaced).retryLater(queued.enqueued[1]));
  events = signals.all();
  REQUIRE(events.size() == 3);
  CHECK(events[1].queued == 1);  // the replacing enqueue
  CHECK(events[2].queued == 0);
  CHECK(events[2].acked == 1);
  CHECK(events[2].retried == 1);
  auto reader = f.reader();
  CHECK(reader->outboxStats()->rows == 2);  // b (retried) and c; nothing of the failed batch
}

TEST_CASE("batches committed together give one outbox signal with the rows of those that held") {
  StoreFixture f;
  f.options.commitWindow = std::chrono::hours(1);  // nothing commits before flush()
  f.open();
  OutboxSignals signals(f);
  auto first = f.writeAsync(WriteBatch().enqueue({"podpatch", "a", "1", 0}));
  auto second = f.writeAsync(
      WriteBatch().enqueue({"podpatch", "b", "1", 0}).enqueue({"podpatch", "c", "1", 0}));
  auto broken = f.writeAsync(
      WriteBatch().enqueue({"podpatch", "d", "1", 0}).enqueue({"", "rolled back", "1", 0}));
  auto none = f.writeAsync(WriteBatch().putKv("k", "v"));
  f.store->flush();
  CHECK(StoreFixture::wait(first).isOk());
  CHECK(StoreFixture::wait(second).isOk());
  CHECK_FALSE(StoreFixture::wait(broken).isOk());
  CHECK(StoreFixture::wait(none).isOk());
  auto events = signals.all();
  REQUIRE(events.size() == 1);
  CHECK(events[0].queued == 3);
  CHECK(f.reader()->outboxStats()->rows == 3);
}
