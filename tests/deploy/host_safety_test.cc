// What comes from the cloud (or from a store an older agent wrote) never reaches the host outside
// the state dir (security issue, defects 1, 2 and 9): a pod's uid, volume names, ConfigMap and
// Secret keys, items[].path and subPath, symlinks a container planted in its volumes, hostPath
// outside node.host_path_allow; one bad stored object never stops the reconciler; what the
// runtime refuses for good is retried with back-off and logged once.
//
// Each case runs the reconciler on the fake runtime with its state dir inside a sandbox directory,
// next to an "outside" tree of files. The outside tree is walked before and after (names, types,
// sizes, modes, mtimes, link targets, never following a symlink): nothing there may be created,
// changed or removed.

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "agent_env.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// Every entry below `root`, by relative path: type, size, mode, mtime and link target.
using Tree = std::map<std::string, std::string>;

Tree walk(const fs::path& root) {
  Tree out;
  std::function<void(const fs::path&)> visit = [&](const fs::path& dir) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      struct stat st {};
      REQUIRE(::lstat(e.path().c_str(), &st) == 0);
      std::string d = std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
                      std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
      if (S_ISLNK(st.st_mode)) d += " -> " + fs::read_symlink(e.path()).string();
      out[fs::relative(e.path(), root).string()] = d;
      if (S_ISDIR(st.st_mode)) visit(e.path());
    }
  };
  struct stat st {};
  REQUIRE(::lstat(root.c_str(), &st) == 0);
  out["."] = std::to_string(st.st_mode) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
             std::to_string(st.st_mtim.tv_nsec);
  visit(root);
  return out;
}

// What differs between two walks, one line per path, for the failure message.
std::string diff(const Tree& before, const Tree& after) {
  std::string out;
  for (const auto& [p, d] : before) {
    auto it = after.find(p);
    if (it == after.end())
      out += "removed: " + p + "\n";
    else if (it->second != d)
      out += "changed: " + p + " (" + d + " => " + it->second + ")\n";
  }
  for (const auto& [p, d] : after) {
    if (!before.count(p)) out += "created: " + p + "\n";
  }
  return out;
}

std::string base64(const std::string& in) {
  static const char* kChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -6;
  for (unsigned char c : in) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(kChars[(val >> bits) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(kChars[((val << 8) >> (bits + 8)) & 0x3F]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

size_t countIn(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The sandbox: <root>/state is the reconciler's state dir, <root>/outside what must stay as is.
struct HostSafety {
  HostSafety() {
    rt.addImage("img:1");
    fs::create_directories(state);
    fs::create_directories(outside / "victim" / "sub");
    fs::create_directories(outside / "etc");
    writeFile(outside / "victim" / "a.txt", "same");
    writeFile(outside / "victim" / "b.txt", "precious");
    writeFile(outside / "victim" / "sub" / "c.txt", "deep");
    writeFile(outside / "etc" / "passwd", "root:x:0:0::/root:/bin/sh\n");
    fs::permissions(outside / "victim" / "a.txt", fs::perms::owner_read | fs::perms::owner_write);
    fs::permissions(outside / "etc" / "passwd", fs::perms::owner_read | fs::perms::owner_write);
    cfg.stateDir = state.string();
    cfg.pollInterval = 1h;  // only the test's passes and the reconciler's own wake-ups
    cfg.resyncInterval = 1h;
    before = walk(outside);
  }

  // Nothing outside the state dir was created, changed or removed.
  void checkOutsideUntouched() {
    std::string changes = diff(before, walk(outside));
    CHECK_MESSAGE(changes.empty(), changes);
  }
  // Every mount of every container the runtime was asked for stays under the state dir, once
  // symlinks are resolved (or is a hostPath under `allowed`).
  void checkMountsInside(const fs::path& allowed = {}) {
    for (const auto& c : rt.configs()) {
      for (const auto& m : c.mounts) {
        std::string real = fs::weakly_canonical(m.hostPath).string();
        bool inside = real.rfind(fs::canonical(state).string() + "/", 0) == 0 ||
                      (!allowed.empty() && real.rfind(fs::canonical(allowed).string(), 0) == 0);
        CHECK_MESSAGE(inside, "container " << c.name << " mounts " << m.hostPath << " -> " << real);
      }
    }
  }
  std::string logText() {
    std::ifstream in(logFile);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  // The message of a container's waiting state, or "".
  std::string waitingMessage(const std::string& key, const std::string& container) {
    for (const auto& c : sink.pod(key).value("containerStatuses", json::array())) {
      if (c["name"] == container && c["state"].contains("waiting"))
        return c["state"]["waiting"].value("message", "");
    }
    return "";
  }
  // The messages of the pod's events with `reason`, joined.
  std::string events(DeployAgent& agent, const std::string& key, const std::string& reason) {
    std::string out;
    auto info = agent.reconciler().podInfo(key);
    if (!info) return out;
    for (const auto& e : info->events) {
      if (e.reason == reason) out += e.message + "\n";
    }
    return out;
  }
  void remove(DeployAgent& agent, const std::string& key) {
    desired.erase(key);
    agent.changed({key});
    // Its containers stop off the loop; then it is removed.
    CHECK(waitFor([&] { return sink.removed(key); }, std::chrono::seconds(30)));
  }

  TempDir root;
  fs::path state = root / "state";
  fs::path outside = root / "outside";
  fs::path logFile = root / "agent.log";
  Tree before;
  FakeRuntime rt;
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  deploy::ReconcilerConfig cfg;
};

json runPod(const std::string& name, const std::string& uid) {
  return busyboxPod(name, uid, "img:1", {{"c", "run"}});
}

json configMap(const std::string& name, json data, json binaryData = json()) {
  json cm = {{"metadata", {{"name", name}, {"namespace", "default"}}}, {"data", std::move(data)}};
  if (!binaryData.is_null()) cm["binaryData"] = std::move(binaryData);
  return cm;
}

// A pod whose container mounts volume `volume` at /mnt.
json mountingPod(const std::string& name, const std::string& uid, json volume,
                 const std::string& subPath = "") {
  json pod = runPod(name, uid);
  json mount = {{"name", volume["name"]}, {"mountPath", "/mnt"}};
  if (!subPath.empty()) mount["subPath"] = subPath;
  pod["spec"]["volumes"] = json::array({volume});
  pod["spec"]["containers"][0]["volumeMounts"] = json::array({mount});
  return pod;
}

TEST_CASE_FIXTURE(HostSafety,
                  "a pod whose uid is an absolute path or holds '..' touches nothing outside the "
                  "state dir, running or deleted, and its status says why") {
  const std::string key = "default/pod/evil";
  for (const std::string& uid : {(outside / "victim").string(), std::string("../../outside/victim"),
                                 std::string("x/../../../outside/victim")}) {
    CAPTURE(uid);
    desired.put(key, runPod("evil", uid).dump());
    {
      DeployAgent agent(rt, desired, sink, clock, cfg);
      REQUIRE(agent.start());
      agent.pass();
      CHECK(sink.phase(key) == "Failed");
      CHECK(sink.pod(key).value("message", "").find("metadata.uid") != std::string::npos);
      CHECK(rt.calls("RunPodSandbox") == 0);
      remove(agent, key);
    }
    checkOutsideUntouched();
  }
}

TEST_CASE_FIXTURE(HostSafety,
                  "a volume name with '/' or '..' makes no directory outside the state dir") {
  int i = 0;
  for (const std::string& name : {std::string("../../../../outside/made-up"),
                                  (outside / "made-abs").string(), std::string("a/b")}) {
    CAPTURE(name);
    const std::string key = "default/pod/vol" + std::to_string(i++);
    desired.put(key,
                mountingPod("vol", "u-vol", {{"name", name}, {"emptyDir", json::object()}}).dump());
    DeployAgent agent(rt, desired, sink, clock, cfg);
    REQUIRE(agent.start());
    CHECK(sink.phase(key) == "Failed");
    CHECK(sink.pod(key).value("message", "").find("spec.volumes[0].name") != std::string::npos);
    remove(agent, key);
  }
  CHECK(rt.calls("CreateContainer") == 0);
  checkOutsideUntouched();
}

TEST_CASE_FIXTURE(HostSafety,
                  "ConfigMap and Secret keys that are absolute paths, '.' or '..' are never "
                  "written: the volume fails naming the key, the pod waits, other pods run") {
  const std::string passwd = (outside / "etc" / "passwd").string();
  const std::string made = (outside / "etc" / "made").string();
  struct Case {
    std::string kind;   // configMap or secret
    std::string field;  // data, binaryData, stringData
    std::string key;
  };
  std::vector<Case> cases = {{"configMap", "data", passwd},
                             {"configMap", "binaryData", made},
                             {"secret", "data", passwd},
                             {"secret", "stringData", made},
                             {"configMap", "data", ".."},
                             {"configMap", "data", "."},
                             {"configMap", "binaryData", ".."},
                             {"secret", "stringData", "."},
                             {"configMap", "data", "../../../../../outside/etc/passwd"}};
  desired.put("default/pod/good", runPod("good", "u-good").dump());
  int i = 0;
  for (const auto& c : cases) {
    CAPTURE(c.kind);
    CAPTURE(c.field);
    CAPTURE(c.key);
    const std::string n = std::to_string(i++);
    const std::string key = "default/pod/bad" + n;
    const std::string object = "obj" + n;
    bool secret = c.kind == "secret";
    json value = secret && c.field == "data" ? json(base64("pwned")) : json("pwned");
    if (c.field == "binaryData") value = base64("pwned");
    json obj = {{"metadata", {{"name", object}, {"namespace", "default"}}},
                {c.field, {{c.key, value}, {"fine", secret ? base64("ok") : "ok"}}}};
    desired.put(std::string("default/") + (secret ? "secret/" : "configmap/") + object, obj.dump());
    json source = secret ? json{{"secretName", object}} : json{{"name", object}};
    desired.put(key,
                mountingPod("bad" + n, "u-bad" + n, {{"name", "data"}, {c.kind, source}}).dump());
  }
  // Cold boot with every bad object in the store (a key ".." used to abort it).
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  agent.pass();
  CHECK(sink.state("default/pod/good", "c") == "running");
  for (size_t n = 0; n < cases.size(); ++n) {
    const std::string key = "default/pod/bad" + std::to_string(n);
    CAPTURE(key);
    CHECK(sink.waitingReason(key, "c") == "CreateContainerConfigError");
    std::string why = waitingMessage(key, "c");
    CHECK(why.find("key \"" + cases[n].key + "\"") != std::string::npos);
    CHECK(events(agent, key, "FailedMount").find(cases[n].key) != std::string::npos);
  }
  CHECK(rt.calls("RunPodSandbox") == 1);  // the good pod's only
  for (size_t n = 0; n < cases.size(); ++n) remove(agent, "default/pod/bad" + std::to_string(n));
  remove(agent, "default/pod/good");
  checkOutsideUntouched();
  // Deleted pods leave nothing behind, also those whose volumes were made but never mounted.
  CHECK(fs::is_empty(state / "pods"));
}

TEST_CASE_FIXTURE(HostSafety,
                  "a stored ConfigMap with the key '..' mounted by a pod does not stop the agent: "
                  "other pods start and that pod says why") {
  desired.put("default/configmap/dots", configMap("dots", {{"..", "x"}}).dump());
  desired.put(
      "default/pod/dots",
      mountingPod("dots", "u-dots", {{"name", "cfg"}, {"configMap", {{"name", "dots"}}}}).dump());
  desired.put("default/pod/other", runPod("other", "u-other").dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  for (int i = 0; i < 3; ++i) agent.pass();  // every pass meets it again
  CHECK(sink.state("default/pod/other", "c") == "running");
  CHECK(sink.waitingReason("default/pod/dots", "c") == "CreateContainerConfigError");
  CHECK(waitingMessage("default/pod/dots", "c").find("key \"..\"") != std::string::npos);
  // A pod that arrives later still starts.
  desired.put("default/pod/later", runPod("later", "u-later").dump());
  agent.changed({"default/pod/later"});
  CHECK(sink.state("default/pod/later", "c") == "running");
  checkOutsideUntouched();
}

TEST_CASE_FIXTURE(HostSafety,
                  "items[].path that is absolute or climbs with '..' is refused with the field") {
  desired.put("default/configmap/cm", configMap("cm", {{"k", "pwned"}}).dump());
  int i = 0;
  for (const std::string& path : {(outside / "etc" / "made").string(), std::string("../../x"),
                                  std::string("a/../../../../../outside/etc/made")}) {
    CAPTURE(path);
    const std::string key = "default/pod/items" + std::to_string(i++);
    json volume = {{"name", "cfg"},
                   {"configMap", {{"name", "cm"}, {"items", {{{"key", "k"}, {"path", path}}}}}}};
    desired.put(key, mountingPod("items", "u-items", volume).dump());
    DeployAgent agent(rt, desired, sink, clock, cfg);
    REQUIRE(agent.start());
    CHECK(sink.phase(key) == "Failed");
    CHECK(sink.pod(key).value("message", "").find("items") != std::string::npos);
    remove(agent, key);
  }
  CHECK(rt.calls("CreateContainer") == 0);
  checkOutsideUntouched();
}

TEST_CASE_FIXTURE(HostSafety, "an absolute subPath is refused, never mounted") {
  const std::string key = "default/pod/sub";
  desired.put(key, mountingPod("sub", "u-sub", {{"name", "scratch"}, {"emptyDir", json::object()}},
                               outside.string())
                       .dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  CHECK(sink.phase(key) == "Failed");
  CHECK(sink.pod(key).value("message", "").find("subPath") != std::string::npos);
  CHECK(rt.calls("CreateContainer") == 0);
  checkMountsInside();
  remove(agent, key);
  checkOutsideUntouched();
}

TEST_CASE_FIXTURE(HostSafety,
                  "symlinks a container planted in its emptyDir are never followed: not by a "
                  "subPath mount, not when the pod is updated, not when it is deleted") {
  const std::string key = "default/pod/plant";
  json pod = mountingPod("plant", "u-plant", {{"name", "scratch"}, {"emptyDir", json::object()}});
  desired.put(key, pod.dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  REQUIRE(sink.state(key, "c") == "running");
  // What the container wrote into /mnt, seen from the host.
  fs::path scratch = state / "pods" / "u-plant" / "volumes" / "scratch";
  REQUIRE(fs::is_directory(scratch));
  fs::create_directory_symlink(outside / "victim", scratch / "link");
  fs::create_symlink(outside / "victim" / "b.txt", scratch / "file");
  fs::create_directories(scratch / "d" / "e");
  fs::create_directory_symlink(outside, scratch / "d" / "e" / "up");
  fs::create_directory_symlink("../../../../../../outside", scratch / "d" / "rel");
  // The pod gains a container that mounts the planted link as its subPath.
  pod["spec"]["containers"].push_back(
      {{"name", "second"},
       {"image", "img:1"},
       {"volumeMounts", {{{"name", "scratch"}, {"mountPath", "/data"}, {"subPath", "link"}}}}});
  desired.put(key, pod.dump());
  agent.changed({key});
  CHECK(sink.state(key, "c") == "running");
  CHECK(sink.waitingReason(key, "second") == "CreateContainerConfigError");
  CHECK(waitingMessage(key, "second").find("symbolic link") != std::string::npos);
  checkMountsInside();
  // A subPath through a planted link to a directory further down is refused as well.
  pod["spec"]["containers"][1]["volumeMounts"][0]["subPath"] = "d/e/up/victim";
  desired.put(key, pod.dump());
  agent.changed({key});
  CHECK(waitingMessage(key, "second").find("symbolic link") != std::string::npos);
  checkMountsInside();
  remove(agent, key);
  CHECK(!fs::exists(state / "pods" / "u-plant"));
  checkOutsideUntouched();
}

TEST_CASE_FIXTURE(HostSafety,
                  "symlinks planted in a configMap volume are replaced or refused when the "
                  "ConfigMap changes, never written through, chmod-ed through or deleted through") {
  const std::string key = "default/pod/cm";
  desired.put("default/configmap/nested", configMap("nested", {{"k", "v1"}}).dump());
  desired.put("default/configmap/flat", configMap("flat", {{"a.txt", "same"}}).dump());
  json pod = runPod("cm", "u-cm");
  pod["spec"]["volumes"] = {
      {{"name", "flat"}, {"configMap", {{"name", "flat"}}}},
      {{"name", "nested"},
       {"configMap", {{"name", "nested"}, {"items", {{{"key", "k"}, {"path", "sub/k"}}}}}}}};
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "nested"}, {"mountPath", "/n"}},
                                                  {{"name", "flat"}, {"mountPath", "/f"}}};
  desired.put(key, pod.dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  REQUIRE(sink.state(key, "c") == "running");
  // Projected volumes are mounted read-only, as Kubernetes does.
  for (const auto& c : rt.configs()) {
    for (const auto& m : c.mounts) CHECK(m.readOnly);
  }
  fs::path volumes = state / "pods" / "u-cm" / "volumes";
  REQUIRE(readFile(volumes / "nested" / "sub" / "k") == "v1");
  // Planted: the directory "sub" becomes a link to the victim; "a.txt" a link to a file whose
  // content is the ConfigMap's value (a chmod through it would change that file's mode).
  fs::remove_all(volumes / "nested" / "sub");
  fs::create_directory_symlink(outside / "victim", volumes / "nested" / "sub");
  fs::remove(volumes / "flat" / "a.txt");
  fs::create_symlink(outside / "victim" / "a.txt", volumes / "flat" / "a.txt");
  fs::create_directory_symlink(outside / "victim", volumes / "flat" / "stale-link");
  desired.put("default/configmap/nested", configMap("nested", {{"k", "v2"}}).dump());
  agent.changed({"default/configmap/nested", "default/configmap/flat"});
  CHECK(events(agent, key, "FailedMount").find("symbolic link") != std::string::npos);
  // The link at a key's name was replaced by the file; the stale link was pruned, not followed.
  CHECK(fs::is_regular_file(fs::symlink_status(volumes / "flat" / "a.txt")));
  CHECK(readFile(volumes / "flat" / "a.txt") == "same");
  CHECK(!fs::exists(fs::symlink_status(volumes / "flat" / "stale-link")));
  checkOutsideUntouched();
  remove(agent, key);
  CHECK(!fs::exists(state / "pods" / "u-cm"));
  checkOutsideUntouched();
}

TEST_CASE_FIXTURE(HostSafety,
                  "runAsUser -1 is refused by the parser with the reason: no sandbox, no retry "
                  "loop, one log line") {
  int i = 0;
  for (const char* where : {"container", "pod", "group"}) {
    CAPTURE(where);
    const std::string key = "default/pod/uid" + std::to_string(i++);
    json pod = runPod("neg", "u-neg" + std::to_string(i));
    if (std::string(where) == "container")
      pod["spec"]["containers"][0]["securityContext"] = {{"runAsUser", -1}};
    else if (std::string(where) == "pod")
      pod["spec"]["securityContext"] = {{"runAsUser", -1}};
    else
      pod["spec"]["containers"][0]["securityContext"] = {{"runAsGroup", -1}};
    desired.put(key, pod.dump());
  }
  {
    DeployAgent agent(rt, desired, sink, clock, cfg, logFile.string());
    REQUIRE(agent.start());
    for (int pass = 0; pass < 5; ++pass) {
      clock.advance(2s);
      agent.pass();
    }
    for (int n = 0; n < 3; ++n) {
      const std::string key = "default/pod/uid" + std::to_string(n);
      CAPTURE(key);
      CHECK(sink.phase(key) == "Failed");
      std::string message = sink.pod(key).value("message", "");
      CHECK(message.find(n == 2 ? "runAsGroup" : "runAsUser") != std::string::npos);
      CHECK(message.find("-1") != std::string::npos);
    }
    CHECK(rt.calls("RunPodSandbox") == 0);
    CHECK(rt.calls("CreateContainer") == 0);
    agent.flushLog();
  }
  // Each pod's reason is logged once, not at every pass.
  CHECK(countIn(logText(), "default/pod/uid0 cannot run") == 1);
}

TEST_CASE_FIXTURE(HostSafety,
                  "a container the runtime refuses (privileged) is retried with back-off, 10 s "
                  "doubling, logged once, its status saying why") {
  cfg.backoffMax = 40s;
  const std::string key = "default/pod/priv";
  json pod = runPod("priv", "u-priv");
  pod["spec"]["containers"][0]["securityContext"] = {{"privileged", true}};
  desired.put(key, pod.dump());
  {
    DeployAgent agent(rt, desired, sink, clock, cfg, logFile.string());
    REQUIRE(agent.start());
    REQUIRE(rt.calls("CreateContainer") == 1);
    CHECK(sink.waitingReason(key, "c") == "CreateContainerError");
    CHECK(waitingMessage(key, "c").find("privileged") != std::string::npos);
    size_t attempts = 1;
    for (auto wait : {10s, 20s, 40s, 40s}) {
      for (int i = 0; i < 3; ++i) agent.pass();  // polling does not retry during the back-off
      CHECK(rt.calls("CreateContainer") == attempts);
      CHECK(sink.waitingReason(key, "c") == "CreateContainerError");
      CHECK(waitingMessage(key, "c").find("Back-off") != std::string::npos);
      clock.advance(wait - 1s);
      agent.pass();
      CHECK(rt.calls("CreateContainer") == attempts);
      clock.advance(1s);  // the back-off's end wakes the pod
      ++attempts;
      REQUIRE(waitFor([&] { return rt.calls("CreateContainer") == attempts; }, 10s));
    }
    auto info = agent.reconciler().podInfo(key);
    REQUIRE(info);
    CHECK(countIn(events(agent, key, "Failed"), "privileged") == 1);
    agent.flushLog();
  }
  CHECK(countIn(logText(), "no privileged container allowed") == 1);
}

TEST_CASE_FIXTURE(HostSafety,
                  "a sandbox the runtime refuses (unknown runtime handler) is retried with "
                  "back-off and logged once") {
  const std::string key = "default/pod/handler";
  json pod = runPod("handler", "u-handler");
  pod["spec"]["runtimeClassName"] = "wasm-not-installed";
  desired.put(key, pod.dump());
  {
    DeployAgent agent(rt, desired, sink, clock, cfg, logFile.string());
    REQUIRE(agent.start());
    REQUIRE(rt.calls("RunPodSandbox") == 1);
    for (int i = 0; i < 5; ++i) agent.pass();
    CHECK(rt.calls("RunPodSandbox") == 1);
    CHECK(sink.waitingReason(key, "c") == "ContainerCreating");
    CHECK(waitingMessage(key, "c").find("wasm-not-installed") != std::string::npos);
    clock.advance(cfg.backoffInitial);
    REQUIRE(waitFor([&] { return rt.calls("RunPodSandbox") == 2; }, 10s));
    agent.flushLog();
  }
  CHECK(countIn(logText(), "no runtime for") == 1);
}

TEST_CASE_FIXTURE(HostSafety,
                  "node.host_path_allow: a hostPath outside every prefix keeps the pod from "
                  "starting with the reason, also through a symlink; one inside runs") {
  fs::path allowed = outside / "allowed";
  fs::create_directories(allowed);
  fs::create_directory_symlink(outside / "victim", allowed / "escape");
  before = walk(outside);
  cfg.hostPathAllow = {allowed.string()};
  auto hostPathPod = [&](const std::string& name, const fs::path& path) {
    return mountingPod(
        name, "u-" + name,
        {{"name", "host"}, {"hostPath", {{"path", path.string()}, {"type", "DirectoryOrCreate"}}}});
  };
  desired.put("default/pod/out", hostPathPod("out", outside / "victim" / "made").dump());
  desired.put("default/pod/esc", hostPathPod("esc", allowed / "escape" / "made").dump());
  desired.put("default/pod/in", hostPathPod("in", allowed).dump());
  DeployAgent agent(rt, desired, sink, clock, cfg);
  REQUIRE(agent.start());
  agent.pass();
  for (const char* key : {"default/pod/out", "default/pod/esc"}) {
    CAPTURE(key);
    CHECK(sink.waitingReason(key, "c") == "CreateContainerConfigError");
    CHECK(waitingMessage(key, "c").find("node.host_path_allow") != std::string::npos);
  }
  CHECK(sink.state("default/pod/in", "c") == "running");
  CHECK(rt.calls("RunPodSandbox") == 1);
  checkMountsInside(allowed);
  checkOutsideUntouched();
}

}  // namespace
}  // namespace outpost::test
