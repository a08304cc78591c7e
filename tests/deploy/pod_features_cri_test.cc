// Pod features against a real containerd: init containers, projected volumes and secrets,
// hostPath and emptyDir, liveness probes, resource limits, security context, pull policy and the
// termination grace period. Each checks what the container actually sees (ExecSync) or what the
// runtime reports, not what the reconciler meant to do.

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "cri_fixture.h"

namespace outpost::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The newest container named `name` of pod `uid`, or nullopt.
std::optional<deploy::Container> newest(CriFixture& f, const std::string& uid,
                                        const std::string& name, bool runningOnly = false) {
  std::optional<deploy::Container> best;
  for (const auto& c : f.containers(uid, runningOnly)) {
    if (c.labels.at("outpost.io/container") != name) continue;
    if (!best || c.createdAt > best->createdAt) best = c;
  }
  return best;
}

std::string exec(CriFixture& f, const std::string& id, std::vector<std::string> cmd) {
  auto r = f.runtime->execSync(id, cmd, 10s);
  REQUIRE(r.isOk());
  return r->out;
}

// The container status of `name` in the pod's last reported status (init or regular).
json reported(CriFixture& f, const std::string& key, const std::string& name) {
  json pod = f.sink.pod(key);
  if (!pod.is_object()) return {};
  for (const char* list : {"initContainerStatuses", "containerStatuses"}) {
    for (const auto& c : pod.value(list, json::array())) {
      if (c["name"] == name) return c;
    }
  }
  return {};
}

// Deletes the pod and waits until the reconciler reports it gone.
void remove(CriFixture& f, DeployAgent& agent, const std::string& key) {
  f.desired.erase(key);
  agent.changed({key});
  REQUIRE(waitFor([&] { return f.sink.removed(key); }, 30s));
}

TEST_CASE("init containers run to completion, in order, before the main containers") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/init";
  auto pod = busyboxPod("init", "uid-init", ContainerdHarness::kBusybox, {{"app", kLoop}});
  json mount = json::array({{{"name", "work"}, {"mountPath", "/work"}}});
  // The second fails (and would be restarted) if the first has not run before it.
  pod["spec"]["initContainers"] = {
      {{"name", "first"},
       {"image", ContainerdHarness::kBusybox},
       {"command", {"/bin/sh", "-c", "sleep 0.3; echo 1 >> /work/order"}},
       {"volumeMounts", mount}},
      {{"name", "second"},
       {"image", ContainerdHarness::kBusybox},
       {"command", {"/bin/sh", "-c", "test -f /work/order && echo 2 >> /work/order"}},
       {"volumeMounts", mount}}};
  pod["spec"]["containers"][0]["volumeMounts"] = mount;
  pod["spec"]["volumes"] = {{{"name", "work"}, {"emptyDir", json::object()}}};
  f.desired.put(key, pod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"app"}); }, 30s));

  auto app = newest(f, "uid-init", "app", true);
  REQUIRE(app);
  CHECK(exec(f, app->id, {"cat", "/work/order"}) == "1\n2\n");
  // The runtime's own timestamps: each started after the previous one finished.
  auto first = f.runtime->containerStatus(newest(f, "uid-init", "first")->id);
  auto second = f.runtime->containerStatus(newest(f, "uid-init", "second")->id);
  auto main = f.runtime->containerStatus(app->id);
  REQUIRE((first.isOk() && second.isOk() && main.isOk()));
  CHECK(first->exitCode == 0);
  CHECK(second->exitCode == 0);
  CHECK(first->finishedAt <= second->startedAt);
  CHECK(second->finishedAt <= main->startedAt);
  // Each init container ran once.
  CHECK(f.containers("uid-init").size() == 3);
  for (const char* name : {"first", "second"}) {
    json s = reported(f, key, name);
    CHECK(s["state"]["terminated"]["reason"] == "Completed");
    CHECK(s["restartCount"] == 0);
  }
  CHECK(f.sink.pod(key)["conditions"][1]["type"] == "Initialized");
  CHECK(f.sink.pod(key)["conditions"][1]["status"] == "True");
  remove(f, *agent, key);
}

TEST_CASE(
    "secrets are projected as 0600 files under the state dir, configmaps as 0644; env from "
    "secretKeyRef; a changed secret is rewritten") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/secret";
  f.desired.put("default/secret/db", json{{"data", {{"password", "czNjcmV0"}}},  // "s3cret"
                                          {"stringData", {{"user", "admin"}}}}
                                         .dump());
  f.desired.put("default/configmap/app", json{{"data", {{"a.conf", "a=1\n"}}}}.dump());
  auto pod = busyboxPod("secret", "uid-secret", ContainerdHarness::kBusybox, {{"app", kLoop}});
  auto& c = pod["spec"]["containers"][0];
  c["env"].push_back({{"name", "DB_PASS"},
                      {"valueFrom", {{"secretKeyRef", {{"name", "db"}, {"key", "password"}}}}}});
  c["volumeMounts"] = {{{"name", "creds"}, {"mountPath", "/etc/creds"}, {"readOnly", true}},
                       {{"name", "cfg"}, {"mountPath", "/etc/cfg"}, {"readOnly", true}}};
  pod["spec"]["volumes"] = {
      {{"name", "creds"}, {"secret", {{"secretName", "db"}}}},
      {{"name", "cfg"},
       {"configMap",
        {{"name", "app"}, {"items", {{{"key", "a.conf"}, {"path", "conf/a.conf"}}}}}}}};
  f.desired.put(key, pod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"app"}); }, 30s));
  auto app = newest(f, "uid-secret", "app", true);
  REQUIRE(app);

  CHECK(exec(f, app->id, {"cat", "/etc/creds/password"}) == "s3cret");
  CHECK(exec(f, app->id, {"cat", "/etc/creds/user"}) == "admin");
  CHECK(exec(f, app->id, {"stat", "-c", "%a", "/etc/creds/password"}) == "600\n");
  CHECK(exec(f, app->id, {"cat", "/etc/cfg/conf/a.conf"}) == "a=1\n");
  CHECK(exec(f, app->id, {"env"}).find("DB_PASS=s3cret\n") != std::string::npos);

  // On the host: under the state dir, secrets 0600 in a 0700 directory, configmaps 0644.
  fs::path volumes = f.state.path() / "pods" / "uid-secret" / "volumes";
  auto mode = [](const fs::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
  };
  CHECK(mode(volumes / "creds" / "password") == 0600);
  CHECK(mode(volumes / "creds" / "user") == 0600);
  CHECK(mode(volumes / "creds") == 0700);
  CHECK(mode(volumes / "cfg" / "conf" / "a.conf") == 0644);

  // The secret changes: the running container sees the new file (the env stays as started).
  f.desired.put("default/secret/db", json{{"data", {{"password", "bmV3"}}}}.dump());  // "new"
  agent->changed({"default/secret/db"});
  CHECK(exec(f, app->id, {"cat", "/etc/creds/password"}) == "new");
  CHECK(exec(f, app->id, {"ls", "/etc/creds"}) == "password\n");
  CHECK(mode(volumes / "creds" / "password") == 0600);
  remove(f, *agent, key);
  CHECK(!fs::exists(f.state.path() / "pods" / "uid-secret"));
}

// Issue 17 item 3: the volume the API server adds to every pod, as the container sees it.
TEST_CASE(
    "a kube-api-access projected volume: the pod waits for its token, then the container reads "
    "token, ca.crt and namespace at /var/run/secrets/kubernetes.io/serviceaccount") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/sa";
  const std::string ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  f.desired.put("default/configmap/kube-root-ca.crt", json{{"data", {{"ca.crt", ca}}}}.dump());
  auto pod = busyboxPod("sa", "uid-sa", ContainerdHarness::kBusybox, {{"app", kLoop}});
  pod["spec"]["serviceAccountName"] = "default";
  pod["spec"]["volumes"] = {kubeApiAccessVolume("kube-api-access-q8w2z")};
  pod["spec"]["containers"][0]["volumeMounts"] = {
      {{"name", "kube-api-access-q8w2z"},
       {"readOnly", true},
       {"mountPath", "/var/run/secrets/kubernetes.io/serviceaccount"}}};
  f.desired.put(key, pod.dump());
  MemoryTokens tokens;
  DeployAgent agent(*f.runtime, f.desired, f.sink, f.clock, f.config, "", nullptr, &tokens);
  REQUIRE(agent.start());
  // No token: nothing runs, and the status says why.
  REQUIRE(waitFor([&] { return tokens.pending() == 1; }, 10s));
  agent.pass();
  CHECK(f.sandboxes("uid-sa").empty());
  CHECK(f.sink.waitingReason(key, "app") == "CreateContainerConfigError");
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  REQUIRE(
      tokens.answer(tokenAnswer(tokens.asked()[0].tokenRequest, "header.payload.sig", now + 3607)));
  REQUIRE(waitFor([&] { return f.allRunning(key, {"app"}); }, 30s));
  auto app = newest(f, "uid-sa", "app", true);
  REQUIRE(app);
  const std::string dir = "/var/run/secrets/kubernetes.io/serviceaccount/";
  CHECK(exec(f, app->id, {"cat", dir + "token"}) == "header.payload.sig");
  CHECK(exec(f, app->id, {"cat", dir + "ca.crt"}) == ca);
  CHECK(exec(f, app->id, {"cat", dir + "namespace"}) == "default");
  CHECK(exec(f, app->id,
             {"stat", "-L", "-c", "%a", dir + "token", dir + "ca.crt", dir + "namespace"}) ==
        "644\n644\n644\n");
  // Read-only, as Kubernetes mounts it.
  auto write = f.runtime->execSync(app->id, {"/bin/sh", "-c", "echo x > " + dir + "token"}, 10s);
  REQUIRE(write.isOk());
  CHECK(write->exitCode != 0);
  remove(f, agent, key);
}

TEST_CASE("hostPath and emptyDir volumes are shared with the host and between containers") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  TempDir host;
  writeFile(host / "from-host", "hello from the host\n");
  const fs::path created = host / "made" / "by" / "agent";
  const std::string key = "default/pod/vols";
  auto pod = busyboxPod(
      "vols", "uid-vols", ContainerdHarness::kBusybox,
      {{"writer", "echo shared > /scratch/msg; echo out > /data/from-pod; " + std::string(kLoop)},
       {"reader", kLoop}});
  pod["spec"]["volumes"] = {
      {{"name", "data"}, {"hostPath", {{"path", host.path().string()}, {"type", "Directory"}}}},
      {{"name", "made"}, {"hostPath", {{"path", created.string()}, {"type", "DirectoryOrCreate"}}}},
      {{"name", "scratch"}, {"emptyDir", json::object()}}};
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "data"}, {"mountPath", "/data"}},
                                                  {{"name", "scratch"}, {"mountPath", "/scratch"}}};
  pod["spec"]["containers"][1]["volumeMounts"] = {
      {{"name", "data"}, {"mountPath", "/data"}, {"readOnly", true}},
      {{"name", "made"}, {"mountPath", "/made"}},
      {{"name", "scratch"}, {"mountPath", "/scratch"}}};
  f.desired.put(key, pod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"writer", "reader"}); }, 30s));
  auto reader = newest(f, "uid-vols", "reader", true);
  REQUIRE(reader);
  CHECK(exec(f, reader->id, {"cat", "/data/from-host"}) == "hello from the host\n");
  REQUIRE(waitFor([&] { return fs::exists(host / "from-pod"); }, 10s));
  CHECK(readFile(host / "from-pod") == "out\n");
  CHECK(exec(f, reader->id, {"cat", "/scratch/msg"}) == "shared\n");
  // The emptyDir lives under the state dir; a read-only hostPath mount refuses writes.
  CHECK(readFile(f.state.path() / "pods" / "uid-vols" / "volumes" / "scratch" / "msg") ==
        "shared\n");
  auto denied = f.runtime->execSync(reader->id, {"sh", "-c", "echo x > /data/nope"}, 10s);
  REQUIRE(denied.isOk());
  CHECK(denied->exitCode != 0);
  CHECK(fs::is_directory(created));
  CHECK(exec(f, reader->id, {"sh", "-c", "echo y > /made/f && cat /made/f"}) == "y\n");
  remove(f, *agent, key);
  // hostPath content belongs to the host: it stays.
  CHECK(fs::exists(created / "f"));
}

TEST_CASE("a failing exec liveness probe gets the container restarted") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/live";
  // Healthy for a moment, then the probe's file disappears.
  auto pod =
      busyboxPod("live", "uid-live", ContainerdHarness::kBusybox,
                 {{"c", "touch /tmp/healthy; sleep 1; rm /tmp/healthy; " + std::string(kLoop)}});
  pod["spec"]["containers"][0]["livenessProbe"] = {{"exec", {{"command", {"cat", "/tmp/healthy"}}}},
                                                   {"periodSeconds", 1},
                                                   {"failureThreshold", 2}};
  f.desired.put(key, pod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"c"}); }, 30s));
  auto firstId = newest(f, "uid-live", "c", true)->id;
  REQUIRE(waitFor([&] { return f.sink.restarts(key, "c") >= 1; }, 30s));
  // The first container was stopped (by the probe, not by its own exit) and a new one runs.
  auto old = f.runtime->containerStatus(firstId);
  REQUIRE(old.isOk());
  CHECK(old->container.state == deploy::ContainerState::kExited);
  REQUIRE(waitFor([&] { return f.sink.state(key, "c") == "running"; }, 30s));
  CHECK(newest(f, "uid-live", "c", true)->id != firstId);
  CHECK(reported(f, key, "c")["lastState"].contains("terminated"));
  remove(f, *agent, key);
}

// Which cgroup hierarchy holds a controller's files for a cgroup path, on v1 or v2.
struct CgroupFiles {
  bool v2 = false;
  fs::path memory, cpu;
};
CgroupFiles cgroupFiles(const std::string& path) {
  struct statfs sf {};
  CgroupFiles out;
  out.v2 = ::statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == 0x63677270;  // CGROUP2_SUPER_MAGIC
  fs::path rel = fs::path(path).relative_path();
  out.memory = out.v2 ? fs::path("/sys/fs/cgroup") / rel : fs::path("/sys/fs/cgroup/memory") / rel;
  out.cpu = out.v2 ? fs::path("/sys/fs/cgroup") / rel : fs::path("/sys/fs/cgroup/cpu") / rel;
  return out;
}

std::string firstLine(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

TEST_CASE("CPU and memory limits reach the container's cgroup (v1 or v2)") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/limits";
  auto pod = busyboxPod("limits", "uid-limits", ContainerdHarness::kBusybox, {{"c", kLoop}});
  pod["spec"]["containers"][0]["resources"] = {{"limits", {{"cpu", "250m"}, {"memory", "64Mi"}}},
                                               {"requests", {{"cpu", "100m"}}}};
  f.desired.put(key, pod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"c"}); }, 30s));
  auto c = newest(f, "uid-limits", "c", true);
  REQUIRE(c);
  // The cgroup the container's processes are in, as the kernel says (cgroupfs driver:
  // <cgroup parent>/pod<uid>/<container id>).
  std::string expected = f.config.cgroupParent + "/poduid-limits/" + c->id;
  auto files = cgroupFiles(expected);
  INFO("cgroup v2: " << files.v2 << ", path " << expected);
  std::string self = exec(f, c->id, {"cat", "/proc/self/cgroup"});
  if (!files.v2) CHECK(self.find(":memory:" + expected + "\n") != std::string::npos);
  if (files.v2) {
    CHECK(firstLine(files.memory / "memory.max") == "67108864");
    CHECK(firstLine(files.cpu / "cpu.max") == "25000 100000");
  } else {
    CHECK(firstLine(files.memory / "memory.limit_in_bytes") == "67108864");
    CHECK(firstLine(files.cpu / "cpu.cfs_quota_us") == "25000");
    CHECK(firstLine(files.cpu / "cpu.cfs_period_us") == "100000");
    CHECK(firstLine(files.cpu / "cpu.shares") == "102");  // the request: 100m * 1024 / 1000
  }
  CHECK(f.sink.pod(key)["qosClass"] == "Burstable");
  remove(f, *agent, key);
  CHECK(!fs::exists(cgroupFiles(f.config.cgroupParent + "/poduid-limits").memory));
}

TEST_CASE("runAsUser and runAsGroup set the container's ids (pod default, container override)") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string key = "default/pod/users";
  auto pod = busyboxPod("users", "uid-users", ContainerdHarness::kBusybox,
                        {{"pod-default", kLoop}, {"own", kLoop}});
  pod["spec"]["securityContext"] = {{"runAsUser", 1000}, {"runAsGroup", 3000}};
  pod["spec"]["containers"][1]["securityContext"] = {{"runAsUser", 2000}};
  f.desired.put(key, pod.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"pod-default", "own"}); }, 30s));
  auto a = newest(f, "uid-users", "pod-default", true);
  auto b = newest(f, "uid-users", "own", true);
  REQUIRE((a && b));
  CHECK(exec(f, a->id, {"id", "-u"}) == "1000\n");
  CHECK(exec(f, a->id, {"id", "-g"}) == "3000\n");
  CHECK(exec(f, b->id, {"id", "-u"}) == "2000\n");
  CHECK(exec(f, b->id, {"id", "-g"}) == "3000\n");
  // The main process too, not only the exec'd one.
  CHECK(exec(f, b->id, {"stat", "-c", "%u", "/proc/1"}) == "2000\n");
  remove(f, *agent, key);
}

TEST_CASE("an absent image: Never waits with ErrImageNeverPull; a failed pull backs off") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  const std::string never = "default/pod/never-pull";
  const std::string pull = "default/pod/pull-fails";
  auto a = busyboxPod("never-pull", "uid-np", "localhost/outpost/absent:1", {{"c", kLoop}});
  a["spec"]["containers"][0]["imagePullPolicy"] = "Never";
  auto b = busyboxPod("pull-fails", "uid-pf", "localhost/outpost/absent:1", {{"c", kLoop}});
  b["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent";
  f.desired.put(never, a.dump());
  f.desired.put(pull, b.dump());
  auto agent = f.agent(f.clock);
  REQUIRE(agent->start());
  CHECK(f.sink.waitingReason(never, "c") == "ErrImageNeverPull");
  CHECK(f.sink.waitingReason(pull, "c") == "ErrImagePull");  // containerd: no network here
  agent->pass();
  CHECK(f.sink.waitingReason(pull, "c") == "ImagePullBackOff");
  CHECK(f.sink.waitingReason(never, "c") == "ErrImageNeverPull");
  for (const auto& key : {never, pull}) CHECK(f.sink.phase(key) == "Pending");
  CHECK(f.containers("uid-np").empty());
  CHECK(f.containers("uid-pf").empty());
  CHECK(agent->reconciler().stats().imagesPulled == 0);
  remove(f, *agent, never);
  remove(f, *agent, pull);
}

// A Runtime that forwards to the real one and remembers, per container, when StopContainer was
// called and the runtime's status of the container just before it was removed.
class StopRecordingRuntime final : public deploy::Runtime {
 public:
  explicit StopRecordingRuntime(deploy::Runtime& inner) : inner_(inner) {}
  struct Record {
    deploy::UnixNanos stopCalledAt = 0;
    int64_t grace = -1;
    std::optional<deploy::ContainerStatus> beforeRemove;
  };
  std::map<std::string, Record> records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

  core::Result<deploy::VersionInfo> version() override { return inner_.version(); }
  core::Result<std::string> runPodSandbox(const deploy::PodSandboxConfig& c,
                                          const std::string& h) override {
    return inner_.runPodSandbox(c, h);
  }
  core::Status stopPodSandbox(const std::string& id) override { return inner_.stopPodSandbox(id); }
  core::Status removePodSandbox(const std::string& id) override {
    return inner_.removePodSandbox(id);
  }
  core::Result<deploy::PodSandboxStatus> podSandboxStatus(const std::string& id) override {
    return inner_.podSandboxStatus(id);
  }
  core::Result<std::vector<deploy::PodSandbox>> listPodSandbox(
      const deploy::SandboxFilter& f) override {
    return inner_.listPodSandbox(f);
  }
  core::Result<std::string> createContainer(const std::string& s, const deploy::ContainerConfig& c,
                                            const deploy::PodSandboxConfig& sc) override {
    return inner_.createContainer(s, c, sc);
  }
  core::Status startContainer(const std::string& id) override { return inner_.startContainer(id); }
  core::Status stopContainer(const std::string& id, std::chrono::seconds grace) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& r = records_[id];
      if (r.stopCalledAt == 0) {
        r.stopCalledAt = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        r.grace = grace.count();
      }
    }
    return inner_.stopContainer(id, grace);
  }
  core::Status removeContainer(const std::string& id) override {
    auto st = inner_.containerStatus(id);
    if (st.isOk()) {
      std::lock_guard<std::mutex> lock(mu_);
      records_[id].beforeRemove = *st;
    }
    return inner_.removeContainer(id);
  }
  core::Result<std::vector<deploy::Container>> listContainers(
      const deploy::ContainerFilter& f) override {
    return inner_.listContainers(f);
  }
  core::Result<deploy::ContainerStatus> containerStatus(const std::string& id) override {
    return inner_.containerStatus(id);
  }
  core::Result<deploy::ExecResult> execSync(const std::string& id,
                                            const std::vector<std::string>& cmd,
                                            std::chrono::seconds timeout) override {
    return inner_.execSync(id, cmd, timeout);
  }
  core::Result<std::optional<deploy::ImageInfo>> imageStatus(const std::string& image) override {
    return inner_.imageStatus(image);
  }
  core::Result<std::string> exec(const deploy::StreamRequest& r) override { return inner_.exec(r); }
  core::Result<std::string> attach(const deploy::StreamRequest& r) override {
    return inner_.attach(r);
  }
  core::Result<std::vector<deploy::ContainerStats>> listContainerStats(
      const deploy::StatsFilter& f) override {
    return inner_.listContainerStats(f);
  }
  core::Result<std::vector<deploy::PodSandboxStats>> listPodSandboxStats(
      const deploy::StatsFilter& f) override {
    return inner_.listPodSandboxStats(f);
  }
  core::Result<std::string> pullImage(const std::string& image) override {
    return inner_.pullImage(image);
  }

 private:
  deploy::Runtime& inner_;
  std::mutex mu_;
  std::map<std::string, Record> records_;
};

TEST_CASE("delete honours the grace period: SIGTERM first, SIGKILL only after the grace") {
  CriFixture f;
  REQUIRE_CONTAINERD(f);
  StopRecordingRuntime recording(*f.runtime);
  const std::string key = "default/pod/grace";
  // PID 1 of a container ignores SIGTERM without a handler; "polite" installs one.
  auto pod =
      busyboxPod("grace", "uid-grace", ContainerdHarness::kBusybox,
                 {{"stubborn", "trap '' TERM; while true; do sleep 1; done"}, {"polite", kLoop}});
  pod["spec"]["terminationGracePeriodSeconds"] = 2;
  f.desired.put(key, pod.dump());
  auto agent = std::make_unique<DeployAgent>(recording, f.desired, f.sink, f.clock, f.config);
  REQUIRE(agent->start());
  REQUIRE(waitFor([&] { return f.allRunning(key, {"stubborn", "polite"}); }, 30s));
  auto stubborn = newest(f, "uid-grace", "stubborn", true)->id;
  auto polite = newest(f, "uid-grace", "polite", true)->id;
  remove(f, *agent, key);

  auto records = recording.records();
  REQUIRE(records.count(stubborn) == 1);
  REQUIRE(records.count(polite) == 1);
  const auto& s = records[stubborn];
  const auto& p = records[polite];
  CHECK(s.grace == 2);
  REQUIRE(s.beforeRemove);
  REQUIRE(p.beforeRemove);
  // Killed (SIGKILL: 128 + 9), and not before the grace period since the stop was asked for.
  CHECK(s.beforeRemove->exitCode == 137);
  CHECK(s.beforeRemove->finishedAt - s.stopCalledAt >= 2'000'000'000);
  CHECK(s.beforeRemove->finishedAt - s.stopCalledAt < 10'000'000'000);
  // The polite one left on SIGTERM by itself.
  CHECK(p.beforeRemove->exitCode == 0);
}

}  // namespace
}  // namespace outpost::test
