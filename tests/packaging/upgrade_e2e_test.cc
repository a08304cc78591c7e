// Issue 21, in-band upgrade, end to end as root with dpkg: the agent installed from the 0.0.1
// package upgrades itself from a loopback HTTP server, with its pods on a real containerd, an MQTT
// broker as the cloud, and this test as the supervisor that restarts the agent when it exits (no
// systemd here: the helper runs detached). Uses the packages packaging_test built
// (OUTPOST_PACKAGES_DIR/{old,new}); skipped when not root, without them, or without containerd.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/containerd_harness.h"
#include "support/file_server.h"
#include "support/mosquitto.h"
#include "support/mqtt_client.h"
#include "support/test_util.h"
#include "upgrade/upgrade_test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace outpost::test;

namespace {

const std::string kOld = "0.0.1-1";
const std::string kNode = "edge-up";

std::string out(const std::vector<std::string>& argv) {
  std::string o, e;
  int rc = run(argv, &o, &e, std::chrono::seconds(120));
  REQUIRE_MESSAGE(rc == 0, argv[0], " ", argv[1], " exited ", rc, ": ", e);
  while (!o.empty() && o.back() == '\n') o.pop_back();
  return o;
}
std::string installed() {
  std::string o;
  run({"/usr/bin/dpkg-query", "-W", "-f=${Version}", "outpost"}, &o);
  return o;
}
std::optional<fs::path> onlyDeb(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".deb") return e.path();
  return std::nullopt;
}

// The supervisor: runs /usr/bin/outpostd and starts it again whenever it exits, keeping each run's
// stderr for the failure messages.
class Supervisor {
 public:
  explicit Supervisor(std::vector<std::string> argv) : argv_(std::move(argv)) {
    thread_ = std::thread([this] {
      while (!stop_) {
        auto child = std::make_unique<Child>(argv_);
        ++starts_;
        while (!stop_ && child->wait(std::chrono::milliseconds(200)) == -1) {
        }
        if (stop_) {
          child->signal(SIGTERM);
          child->wait(std::chrono::seconds(15));
        }
        std::lock_guard lock(mu_);
        log_ += child->err();
      }
    });
  }
  ~Supervisor() {
    stop_ = true;
    thread_.join();
  }
  int starts() const { return starts_; }
  std::string log() const {
    std::lock_guard lock(mu_);
    return log_;
  }

 private:
  std::vector<std::string> argv_;
  std::atomic<bool> stop_{false};
  std::atomic<int> starts_{0};
  mutable std::mutex mu_;
  std::string log_;
  std::thread thread_;
};

// The store's schema version (PRAGMA user_version), read with SQLite itself (a running agent's
// store too: it is in WAL mode), or written to a file no agent has open; -1 when it cannot be read.
int schemaVersion(const fs::path& db, std::optional<int> set = std::nullopt) {
  sqlite3* h = nullptr;
  int v = -1;
  // Read-only unless writing: a poll must never create the file while a rollback puts it back.
  const int flags = set ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
  if (sqlite3_open_v2(db.c_str(), &h, flags, nullptr) == SQLITE_OK) {
    if (set)
      sqlite3_exec(h, ("PRAGMA user_version = " + std::to_string(*set)).c_str(), nullptr, nullptr,
                   nullptr);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return v;
}

// The store schema an outpostd writes, from the second line of its --version ("store schema N").
int schemaOf(const fs::path& outpostd) {
  std::string o = out({outpostd.string(), "--version"});
  auto at = o.find("\nstore schema ");
  REQUIRE_MESSAGE(at != std::string::npos, outpostd, " --version: ", o);
  return std::stoi(o.substr(at + 14));
}

// Purges the package and what it made, whatever the test's end.
struct Purge {
  ~Purge() {
    run({"/usr/bin/dpkg", "--purge", "--force-all", "outpost"});
    std::error_code ec;
    fs::remove_all("/etc/outpost", ec);
    fs::remove_all("/var/lib/outpost", ec);
  }
};

}  // namespace

TEST_CASE(
    "an agent installed from 0.0.1 refuses a bad package, rolls back a broken one and upgrades "
    "itself, its pods running throughout") {
  const char* dirEnv = std::getenv("OUTPOST_PACKAGES_DIR");
  auto oldDeb = dirEnv ? onlyDeb(fs::path(dirEnv) / "old") : std::nullopt;
  auto newDeb = dirEnv ? onlyDeb(fs::path(dirEnv) / "new") : std::nullopt;
  std::string why = ContainerdHarness::unavailableReason();
  if (::geteuid() != 0) why = "not root";
  if (why.empty() && !fs::exists("/usr/bin/dpkg")) why = "no dpkg";
  if (why.empty() && (!oldDeb || !newDeb))
    why = "no packages in OUTPOST_PACKAGES_DIR (run packaging_test first)";
  if (why.empty() &&
      (installed() != "" || fs::exists("/etc/outpost") || fs::exists("/var/lib/outpost")))
    why = "outpost is installed here, or /etc/outpost or /var/lib/outpost exists";
  if (!why.empty()) {
    MESSAGE("skipped: " << why);
    return;
  }
  const std::string newVersion = out({"/usr/bin/dpkg-deb", "-f", newDeb->string(), "Version"});
  const std::string arch = out({"/usr/bin/dpkg", "--print-architecture"});

  ContainerdHarness cri;
  cri.start();
  Mosquitto broker;
  TempDir dir;
  FileServer server;
  ReleaseKey release(dir.path(), "release");
  Purge purge;
  REQUIRE(out({"/usr/bin/dpkg", "-i", oldDeb->string()}).size() > 0);
  REQUIRE(installed() == kOld);

  // The two packages straddle a store migration: 0.0.1 is built at an earlier schema
  // (packaging_test.sh, OUTPOST_STORE_SCHEMA), and each outpostd says which it writes.
  fs::path tree = dir / "broken";
  out({"/usr/bin/dpkg-deb", "-R", newDeb->string(), tree.string()});
  const int oldSchema = schemaOf("/usr/bin/outpostd");
  const int newSchema = schemaOf(tree / "usr/bin/outpostd");
  REQUIRE_MESSAGE(oldSchema < newSchema, "0.0.1 writes schema ", oldSchema, ", the new agent ",
                  newSchema);

  // A package whose agent cannot become healthy: the new agent itself, started by a wrapper that
  // gives it a runtime endpoint nobody answers. It opens (and so migrates) the store, then never
  // proves itself. The real binary keeps the name outpostd, which the helper stops by.
  fs::create_directories(tree / "usr/lib/outpost/broken");
  fs::rename(tree / "usr/bin/outpostd", tree / "usr/lib/outpost/broken/outpostd");
  writeFile(tree / "usr/bin/outpostd",
            "#!/bin/sh\n"
            "if [ \"$1\" = --config ]; then\n"
            "  echo broken agent: no runtime >&2\n"
            "  sed 's#endpoint: \"unix://[^\"]*\"#endpoint: \"unix:///nonexistent/cri.sock\"#' "
            "\"$2\" >\"$2.broken\"\n"
            "  exec /usr/lib/outpost/broken/outpostd --config \"$2.broken\"\n"
            "fi\n"
            "exec /usr/lib/outpost/broken/outpostd \"$@\"\n");
  ::chmod((tree / "usr/bin/outpostd").c_str(), 0755);
  std::string control = readFile(tree / "DEBIAN/control");
  control.replace(control.find("Version: " + newVersion), 9 + newVersion.size(),
                  "Version: 0.1.99-1");
  writeFile(tree / "DEBIAN/control", control);
  fs::remove(tree / "DEBIAN/md5sums");
  fs::path brokenDeb = dir / "broken.deb";
  out({"/usr/bin/dpkg-deb", "--root-owner-group", "-b", tree.string(), brokenDeb.string()});

  server.put("/old.deb", readFile(*oldDeb));
  server.put("/new.deb", readFile(*newDeb));
  server.put("/broken.deb", readFile(brokenDeb));
  auto pkg = [&](const std::string& path, const fs::path& file, const std::string& sig = "") {
    return json{{"format", "deb"},
                {"arch", arch},
                {"url", server.url(path)},
                {"sha256", sha256Hex(file)},
                {"signature", sig.empty() ? release.sign(file) : sig}};
  };
  auto upgrade = [&](const std::string& name, const std::string& version, const json& p) {
    json o{{"apiVersion", "outpost.io/v1"},
           {"kind", "AgentUpgrade"},
           {"metadata", {{"name", name}}},
           {"spec",
            {{"version", version},
             {"packages", {p}},
             {"rollback", {{"version", kOld}, {"packages", {pkg("/old.deb", *oldDeb)}}}}}}};
    writeFile(dir / (name + ".json"), o.dump());
    return (dir / (name + ".json")).string();
  };

  writeFile(dir / "outpost.yaml",
            "node: {name: " + kNode + ", state_dir: " + (dir / "state").string() + "}\n" +
                "runtime: {endpoint: \"" + cri.endpoint() + "\", sandbox_image: \"" +
                ContainerdHarness::kPause + "\", cgroup_parent: \"" + cri.cgroupParent().substr(1) +
                "\"}\n" + "device: {enabled: false}\n" + "cloud: {mqtt: {broker: \"" +
                broker.uri() + "\"}, reconnect: {base: 100ms, cap: 1s}}\n" +
                "api: {socket: " + (dir / "o.sock").string() + ", metrics_address: \"\"}\n" +
                "upgrade: {health_timeout: 20s, trusted_keys: [\"" + release.publicRawBase64() +
                "\"]}\n");
  const std::string config = (dir / "outpost.yaml").string();
  Supervisor agent({"/usr/bin/outpostd", "--config", config});
  MqttTestClient cloud(broker.uri());
  cloud.subscribe("outpost/v1/nodes/" + kNode + "/status/default/agentupgrade/#");
  auto status = [&](const std::string& name) -> json {
    auto msgs =
        cloud.messagesOn("outpost/v1/nodes/" + kNode + "/status/default/agentupgrade/" + name);
    if (msgs.empty()) return json();
    auto env = json::parse(msgs.back().payload, nullptr, false);
    return env.is_object() ? env["content"] : json();
  };
  auto phase = [&](const std::string& name) {
    json s = status(name);
    return s.is_object() ? s.value("phase", "") : "";
  };
  auto apply = [&](const std::string& file) {
    out({"/usr/bin/outpostctl", "-c", config, "apply", "-f", file});
  };
  auto containers = [&] {
    std::string ids;
    cri.ctr({"containers", "ls", "-q"}, &ids);
    return ids;
  };

  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", "keeps-running"}}},
              {"spec",
               {{"hostNetwork", true},
                {"containers",
                 {{{"name", "main"},
                   {"image", ContainerdHarness::kBusybox},
                   {"command", {"/bin/sleep", "3600"}}}}}}}};
  writeFile(dir / "pod.json", pod.dump());
  apply((dir / "pod.json").string());
  // The pause sandbox and the container.
  auto lines = [](const std::string& s) { return std::count(s.begin(), s.end(), '\n'); };
  REQUIRE_MESSAGE(waitFor([&] { return lines(containers()) >= 2; }, std::chrono::seconds(60)),
                  agent.log());
  const std::string running = containers();
  const fs::path store = dir / "state/outpost.db";

  // 0. The 0.0.1 agent refuses a store of a newer schema, with a clear error, and leaves it alone
  // (what a rollback would meet without the store's snapshot).
  {
    TempDir newer;
    schemaVersion(newer / "outpost.db", 99);
    std::string text = readFile(dir / "outpost.yaml");
    text.replace(text.find((dir / "state").string()), (dir / "state").string().size(),
                 newer.path().string());
    text.replace(text.find((dir / "o.sock").string()), (dir / "o.sock").string().size(),
                 (newer / "o.sock").string());
    writeFile(newer / "outpost.yaml", text);
    std::string o, e;
    int rc = run({"/usr/bin/outpostd", "--config", (newer / "outpost.yaml").string()}, &o, &e,
                 std::chrono::seconds(60));
    CHECK(rc == 69);
    CHECK_MESSAGE(e.find("has schema version 99, newer than version") != std::string::npos, e);
    CHECK(schemaVersion(newer / "outpost.db") == 99);
  }

  // 1. A bad signature: refused, nothing installed.
  auto other = [&] {
    ReleaseKey k(dir / "", "other");
    return k.sign(*newDeb);
  }();
  apply(upgrade("bad-signature", newVersion, pkg("/new.deb", *newDeb, other)));
  REQUIRE_MESSAGE(
      waitFor([&] { return phase("bad-signature") == "failed"; }, std::chrono::seconds(60)),
      status("bad-signature").dump(), agent.log());
  CHECK(status("bad-signature")["reason"].get<std::string>().find("made by none of the 1 key(s)") !=
        std::string::npos);
  CHECK(installed() == kOld);

  // 2. A package whose agent cannot become healthy: rolled back to 0.0.1, whose agent opens its
  // (restored) store and reports the rollback with the reason. The broken agent migrated the store
  // to a schema 0.0.1 refuses: only the snapshot lets 0.0.1 run again.
  REQUIRE(schemaVersion(store) == oldSchema);
  apply(upgrade("broken", "0.1.99-1", pkg("/broken.deb", brokenDeb)));
  REQUIRE_MESSAGE(
      waitFor([&] { return schemaVersion(store) == newSchema; }, std::chrono::seconds(60)),
      "the new agent did not migrate the store: ", agent.log());
  REQUIRE_MESSAGE(
      waitFor([&] { return phase("broken") == "rolled back"; }, std::chrono::seconds(120)),
      status("broken").dump(), agent.log());
  CHECK(status("broken")["reason"] == "the agent 0.1.99-1 was not healthy within 20s");
  CHECK(installed() == kOld);
  // It did run (a run's output is kept when it ends), and was stopped.
  CHECK(agent.log().find("broken agent: no runtime") != std::string::npos);
  std::string o;
  REQUIRE(waitFor([&] {
    return run({"/usr/bin/outpostctl", "-c", config, "get", "pods", "-o", "json"}, &o) == 0 &&
           o.find("keeps-running") != std::string::npos;
  }));
  CHECK(containers() == running);
  CHECK(schemaVersion(store) == oldSchema);
  out({"/usr/bin/outpostctl", "-c", config, "delete", "agentupgrade", "broken"});

  // 3. The real upgrade: healthy, the pods' containers the same.
  apply(upgrade("to-new", newVersion, pkg("/new.deb", *newDeb)));
  REQUIRE_MESSAGE(waitFor([&] { return phase("to-new") == "healthy"; }, std::chrono::seconds(120)),
                  status("to-new").dump(), agent.log());
  CHECK(installed() == newVersion);
  CHECK(containers() == running);
  // The store was migrated, and what 0.0.1 stored is still there.
  CHECK(schemaVersion(store) == newSchema);
  REQUIRE(waitFor([&] {
    return run({"/usr/bin/outpostctl", "-c", config, "get", "pods", "-o", "json"}, &o) == 0 &&
           o.find("keeps-running") != std::string::npos;
  }));
  CHECK(fs::exists(dir / "state/upgrade/kept" / (newVersion + "_" + arch + ".deb")));
}
