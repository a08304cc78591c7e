#include "outpost/agent/lifecycle.h"

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "support/test_util.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

// Records what happens to it in a shared journal.
class FakeModule final : public Module {
 public:
  FakeModule(std::string name, std::vector<std::string>& journal, std::mutex& mu)
      : name_(std::move(name)), journal_(journal), mu_(mu) {}
  std::string name() const override { return name_; }
  core::Status start() override {
    record("start " + name_);
    return failStart ? core::unavailable("socket missing") : core::okStatus();
  }
  void stop() override {
    record("stop " + name_);
    if (hangOnStop) {
      std::unique_lock l(hangMu);
      hangCv.wait(l, [&] { return release; });
    }
  }
  void unhang() {
    std::lock_guard l(hangMu);
    release = true;
    hangCv.notify_all();
  }
  bool failStart = false;
  bool hangOnStop = false;

 private:
  void record(const std::string& s) {
    std::lock_guard l(mu_);
    journal_.push_back(s);
  }
  std::string name_;
  std::vector<std::string>& journal_;
  std::mutex& mu_;
  std::mutex hangMu;
  std::condition_variable hangCv;
  bool release = false;
};

}  // namespace

TEST_CASE("modules start in the order added and stop in reverse") {
  std::vector<std::string> journal;
  std::mutex mu;
  FakeModule store("metadb", journal, mu), deploy("deploy", journal, mu),
      cloud("cloud", journal, mu);
  Lifecycle lc{core::Logger()};
  lc.add(store);
  lc.add(deploy);
  lc.add(cloud);
  std::vector<std::string> progress;
  lc.onProgress([&](const std::string& p) { progress.push_back(p); });
  CHECK_FALSE(lc.ready());
  REQUIRE(lc.startAll().isOk());
  CHECK(lc.ready());
  for (const auto& s : lc.status()) CHECK(s.state == ModuleState::kRunning);
  REQUIRE(lc.stopAll(std::chrono::seconds(2)));
  CHECK_FALSE(lc.ready());
  CHECK(journal == std::vector<std::string>{"start metadb", "start deploy", "start cloud",
                                            "stop cloud", "stop deploy", "stop metadb"});
  CHECK(progress.front() == "starting metadb");
  for (const auto& s : lc.status()) CHECK(s.state == ModuleState::kStopped);
}

TEST_CASE("a module that fails to start stops those already started and is named in the error") {
  std::vector<std::string> journal;
  std::mutex mu;
  FakeModule a("metadb", journal, mu), b("deploy", journal, mu), c("cloud", journal, mu);
  b.failStart = true;
  Lifecycle lc{core::Logger()};
  lc.add(a);
  lc.add(b);
  lc.add(c);
  auto s = lc.startAll();
  CHECK(s.code() == core::Code::kUnavailable);
  CHECK(s.message() == "starting deploy: socket missing");
  CHECK(journal == std::vector<std::string>{"start metadb", "start deploy", "stop metadb"});
  CHECK_FALSE(lc.ready());
  CHECK(lc.status()[1].state == ModuleState::kFailed);
}

TEST_CASE("a module that hangs in stop does not hold the stop past its deadline") {
  std::vector<std::string> journal;
  std::mutex mu;
  FakeModule a("metadb", journal, mu), b("cloud", journal, mu);
  b.hangOnStop = true;
  Lifecycle lc{core::Logger()};
  lc.add(a);
  lc.add(b);
  REQUIRE(lc.startAll().isOk());
  CHECK_FALSE(lc.stopAll(std::chrono::milliseconds(100)));
  CHECK(lc.status()[1].state == ModuleState::kStopping);
  b.unhang();  // the stop then completes; the lifecycle's destructor waits for it
  CHECK(outpost::test::waitFor([&] { return lc.status()[0].state == ModuleState::kStopped; }));
}
