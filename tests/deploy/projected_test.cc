// Projected and downwardAPI volumes, and service-account tokens (issue 17 item 3), on the fake
// runtime with a manual clock: the pod Kubernetes admits (kube-api-access-*) waits until every file
// of the volume can be made, its token is asked of the cloud as EdgeCore's meta manager does,
// refreshed before it expires and kept for a restart without the cloud.

#include "projected.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "agent_env.h"
#include "pod_spec.h"
#include "sa_tokens.h"
#include "support/fake_runtime.h"

namespace outpost::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kKey = "apps/pod/web";
constexpr const char* kUid = "0b6c7a52-1d2e-4f3a-9b8c-7d6e5f4a3b21";
constexpr const char* kVolume = "kube-api-access-x7k2p";
constexpr const char* kCa = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

// The pod as the API server admits it: a kube-api-access projected volume mounted read-only at
// /var/run/secrets/kubernetes.io/serviceaccount in every container.
json admittedPod() {
  json pod = busyboxPod("web", kUid, "img:1", {{"app", "sleep 1000"}});
  pod["metadata"]["namespace"] = "apps";
  pod["metadata"]["labels"] = {{"app", "web"}, {"tier", "front"}};
  pod["spec"]["serviceAccountName"] = "builder";
  pod["spec"]["serviceAccount"] = "builder";
  pod["spec"]["volumes"] = {kubeApiAccessVolume(kVolume)};
  pod["spec"]["containers"][0]["volumeMounts"] = {
      {{"name", kVolume},
       {"readOnly", true},
       {"mountPath", "/var/run/secrets/kubernetes.io/serviceaccount"}}};
  return pod;
}

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int modeOf(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
}

int64_t unixNow(core::Clock& clock) {
  return std::chrono::duration_cast<std::chrono::seconds>(clock.wallNow().time_since_epoch())
      .count();
}

struct Projected {
  Projected() {
    rt.addImage("img:1");
    cfg.stateDir = state.path().string();
    desired.put("apps/configmap/kube-root-ca.crt", json{{"data", {{"ca.crt", kCa}}}}.dump());
    desired.put(kKey, admittedPod().dump());
  }
  std::unique_ptr<DeployAgent> agent() {
    return std::make_unique<DeployAgent>(rt, desired, sink, clock, cfg, "", nullptr, &tokens);
  }
  fs::path volume() const { return state.path() / "pods" / kUid / "volumes" / kVolume; }
  size_t sandboxes() { return rt.listPodSandbox({})->size(); }
  // Answers the oldest token request with `token`, valid `lifetime` from now.
  void answer(const std::string& token, std::chrono::seconds lifetime = 3607s) {
    auto asked = tokens.asked();
    REQUIRE(!asked.empty());
    REQUIRE(tokens.answer(tokenAnswer(asked.back().tokenRequest, token,
                                      unixNow(clock) + lifetime.count(), lifetime.count())));
  }
  std::string waitingMessage() {
    json p = sink.pod(kKey);
    if (!p.is_object()) return "";
    return p["containerStatuses"][0]["state"].value("waiting", json::object()).value("message", "");
  }

  FakeRuntime rt;
  core::ManualClock clock;
  MemoryDesired desired;
  MemorySink sink;
  MemoryTokens tokens;
  TempDir state;
  deploy::ReconcilerConfig cfg;
};

TEST_CASE_FIXTURE(Projected,
                  "a pod with a kube-api-access volume waits for its token, then runs with token, "
                  "ca.crt and namespace in its volume") {
  auto a = agent();
  REQUIRE(a->start());
  // No token yet: no sandbox, the container waits saying which volume and why; never Ready.
  CHECK(sandboxes() == 0);
  CHECK(sink.waitingReason(kKey, "app") == "CreateContainerConfigError");
  CHECK(waitingMessage().find(std::string("volume ") + kVolume) != std::string::npos);
  CHECK(waitingMessage().find("service-account token of apps/builder not obtained yet") !=
        std::string::npos);
  CHECK(sink.pod(kKey)["conditions"][2]["type"] == "ContainersReady");
  CHECK(sink.pod(kKey)["conditions"][2]["status"] == "False");
  auto info = a->reconciler().podInfo(kKey);
  REQUIRE(info);
  REQUIRE(!info->events.empty());
  CHECK(info->events.back().reason == "FailedMount");

  // What was asked: the kubelet's TokenRequest, bound to the pod.
  auto asked = tokens.asked();
  REQUIRE(asked.size() == 1);
  CHECK(asked[0].ns == "apps");
  CHECK(asked[0].serviceAccount == "builder");
  const json& tr = asked[0].tokenRequest;
  CHECK(tr["kind"] == "TokenRequest");
  CHECK(tr["apiVersion"] == "authentication.k8s.io/v1");
  CHECK(tr["metadata"]["name"] == "builder");
  CHECK(tr["spec"]["expirationSeconds"] == 3607);
  CHECK(tr["spec"]["audiences"].is_null());
  CHECK(tr["spec"]["boundObjectRef"] ==
        json{{"kind", "Pod"}, {"apiVersion", "v1"}, {"name", "web"}, {"uid", kUid}});
  // Passes while the request is out ask nothing more.
  a->pass();
  CHECK(tokens.asked().size() == 1);

  answer("eyJhbGciOiJSUzI1NiJ9.first.sig");
  a->pass();
  CHECK(sink.state(kKey, "app") == "running");
  CHECK(readFile(volume() / "token") == "eyJhbGciOiJSUzI1NiJ9.first.sig");
  CHECK(readFile(volume() / "ca.crt") == kCa);
  CHECK(readFile(volume() / "namespace") == "apps");
  for (const char* f : {"token", "ca.crt", "namespace"}) CHECK(modeOf(volume() / f) == 0644);
  // Mounted read-only where the API server said.
  auto cfgs = rt.configs();
  REQUIRE(cfgs.size() == 1);
  REQUIRE(cfgs[0].mounts.size() == 1);
  CHECK(cfgs[0].mounts[0].containerPath == "/var/run/secrets/kubernetes.io/serviceaccount");
  CHECK(cfgs[0].mounts[0].hostPath == volume().string());
  CHECK(cfgs[0].mounts[0].readOnly);
}

TEST_CASE_FIXTURE(Projected,
                  "the token is asked again at 80 % of its lifetime and rewritten while the pod "
                  "runs; a failed refresh keeps the valid token") {
  auto a = agent();
  REQUIRE(a->start());
  answer("token-1", 1000s);
  a->pass();
  REQUIRE(sink.state(kKey, "app") == "running");
  std::string id = rt.listContainers({})->front().id;

  clock.advance(799s);
  a->pass();
  CHECK(tokens.asked().size() == 1);  // not yet due
  clock.advance(1s);
  a->pass();
  REQUIRE(tokens.asked().size() == 2);  // at 80 %
  // The cloud cannot answer: the pod runs on with the token it has, which is still valid.
  REQUIRE(tokens.answer(core::unavailable("offline")));
  a->pass();
  CHECK(readFile(volume() / "token") == "token-1");
  CHECK(sink.state(kKey, "app") == "running");
  clock.advance(2s);  // the retry's back-off
  a->pass();
  REQUIRE(tokens.asked().size() == 3);
  answer("token-2", 1000s);
  a->pass();
  CHECK(readFile(volume() / "token") == "token-2");
  CHECK(modeOf(volume() / "token") == 0644);
  // The same container: the file changed under it.
  CHECK(rt.listContainers({})->size() == 1);
  CHECK(rt.listContainers({})->front().id == id);
}

TEST_CASE_FIXTURE(Projected,
                  "a restart uses the saved token while it is valid; an expired one is dropped and "
                  "asked again") {
  {
    auto a = agent();
    REQUIRE(a->start());
    answer("kept-token", 3607s);
    a->pass();
    REQUIRE(sink.state(kKey, "app") == "running");
  }
  CHECK(tokens.saved().find("kept-token") != std::string::npos);
  fs::remove(volume() / "token");
  {
    // Offline restart: nothing asked, the token comes back from what was saved.
    auto a = agent();
    REQUIRE(a->start());
    CHECK(tokens.asked().size() == 1);
    CHECK(readFile(volume() / "token") == "kept-token");
  }
  clock.advance(3607s);
  {
    auto a = agent();
    REQUIRE(a->start());
    CHECK(tokens.asked().size() == 2);
    CHECK(tokens.saved().find("kept-token") == std::string::npos);
  }
}

TEST_CASE_FIXTURE(Projected,
                  "a token answer that cannot be used keeps the pod waiting, saying why") {
  auto a = agent();
  REQUIRE(a->start());
  auto tr = tokens.asked().back().tokenRequest;
  SUBCASE("expired") {
    REQUIRE(tokens.answer(tokenAnswer(tr, "old", unixNow(clock) - 1)));
    a->pass();
    CHECK(waitingMessage().find("has passed") != std::string::npos);
  }
  SUBCASE("no token") {
    REQUIRE(tokens.answer(tokenAnswer(tr, "", unixNow(clock) + 3600)));
    a->pass();
    CHECK(waitingMessage().find("status.token is missing or empty") != std::string::npos);
  }
  SUBCASE("a token with a newline") {
    REQUIRE(tokens.answer(tokenAnswer(tr, "a\nb", unixNow(clock) + 3600)));
    a->pass();
    CHECK(waitingMessage().find("not printable ASCII") != std::string::npos);
  }
  SUBCASE("not a time") {
    json bad = json::parse(tokenAnswer(tr, "t", 0));
    bad["status"]["expirationTimestamp"] = "tomorrow";
    REQUIRE(tokens.answer(bad.dump()));
    a->pass();
    CHECK(waitingMessage().find("is not an RFC 3339 time") != std::string::npos);
  }
  SUBCASE("the cloud's error") {
    REQUIRE(tokens.answer(core::notFound("serviceaccounts \"builder\" not found")));
    a->pass();
    CHECK(waitingMessage().find("serviceaccounts \"builder\" not found") != std::string::npos);
  }
  CHECK(sandboxes() == 0);
  CHECK(sink.waitingReason(kKey, "app") == "CreateContainerConfigError");
  CHECK_FALSE(fs::exists(volume() / "token"));
}

TEST_CASE_FIXTURE(Projected,
                  "offline the token is asked again every 2 s; the cloud's refusals back off") {
  auto a = agent();
  REQUIRE(a->start());
  for (size_t i = 1; i <= 4; ++i) {  // UNAVAILABLE: nothing reached the cloud
    REQUIRE(tokens.asked().size() == i);
    REQUIRE(tokens.answer(core::unavailable("offline")));
    a->pass();
    clock.advance(2s);
    a->pass();
  }
  REQUIRE(tokens.asked().size() == 5);
  // Refused by the cloud: 2 s, then 4 s.
  REQUIRE(tokens.answer(core::abortedError("the cloud answered with an error")));
  a->pass();
  clock.advance(2s);
  a->pass();
  REQUIRE(tokens.asked().size() == 6);
  REQUIRE(tokens.answer(core::abortedError("the cloud answered with an error")));
  a->pass();
  clock.advance(2s);
  a->pass();
  CHECK(tokens.asked().size() == 6);
  clock.advance(2s);
  a->pass();
  CHECK(tokens.asked().size() == 7);
  CHECK(waitingMessage().find("the cloud answered with an error") != std::string::npos);
}

TEST_CASE_FIXTURE(Projected,
                  "a missing kube-root-ca.crt keeps the pod waiting and is asked of the cloud") {
  desired.erase("apps/configmap/kube-root-ca.crt");
  auto a = agent();
  REQUIRE(a->start());
  answer("t");
  a->pass();
  CHECK(sink.waitingReason(kKey, "app") == "CreateContainerConfigError");
  CHECK(waitingMessage().find("configmap apps/kube-root-ca.crt not found") != std::string::npos);
  CHECK(desired.fetched() == std::vector<std::string>{"apps/configmap/kube-root-ca.crt"});
  desired.put("apps/configmap/kube-root-ca.crt", json{{"data", {{"ca.crt", kCa}}}}.dump());
  a->changed({"apps/configmap/kube-root-ca.crt"});
  CHECK(sink.state(kKey, "app") == "running");
}

TEST_CASE_FIXTURE(Projected, "without a token source the pod waits, saying so") {
  auto a = std::make_unique<DeployAgent>(rt, desired, sink, clock, cfg);
  REQUIRE(a->start());
  CHECK(sandboxes() == 0);
  CHECK(waitingMessage().find("this node has no source of tokens") != std::string::npos);
}

TEST_CASE_FIXTURE(Projected,
                  "downwardAPI files: name, namespace, uid, labels and annotations as Kubernetes "
                  "writes them, per-item modes; an unsupported field keeps the pod waiting") {
  json pod = admittedPod();
  pod["metadata"]["annotations"] = {{"note", "say \"hi\""}};
  pod["spec"]["containers"][0]["resources"] = {{"limits", {{"cpu", "1500m"}, {"memory", "64Mi"}}}};
  json items = json::array();
  for (auto [path, field] : {std::pair{"name", "metadata.name"},
                             {"uid", "metadata.uid"},
                             {"labels", "metadata.labels"},
                             {"annotations", "metadata.annotations"},
                             {"tier", "metadata.labels['tier']"}})
    items.push_back({{"path", path}, {"fieldRef", {{"fieldPath", field}}}});
  items[0]["mode"] = 0600;
  items.push_back({{"path", "cpu"},
                   {"resourceFieldRef", {{"containerName", "app"}, {"resource", "limits.cpu"}}}});
  items.push_back(
      {{"path", "mem"},
       {"resourceFieldRef",
        {{"containerName", "app"}, {"resource", "limits.memory"}, {"divisor", "1Mi"}}}});
  pod["spec"]["volumes"] = {{{"name", "info"}, {"downwardAPI", {{"items", items}}}}};
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "info"}, {"mountPath", "/info"}}};
  desired.put(kKey, pod.dump());
  auto a = agent();
  REQUIRE(a->start());
  REQUIRE(sink.state(kKey, "app") == "running");
  fs::path dir = state.path() / "pods" / kUid / "volumes" / "info";
  CHECK(readFile(dir / "name") == "web");
  CHECK(modeOf(dir / "name") == 0600);
  CHECK(modeOf(dir / "uid") == 0644);
  CHECK(readFile(dir / "uid") == kUid);
  CHECK(readFile(dir / "labels") == "app=\"web\"\ntier=\"front\"");
  CHECK(readFile(dir / "annotations") == "note=\"say \\\"hi\\\"\"");
  CHECK(readFile(dir / "tier") == "front");
  CHECK(readFile(dir / "cpu") == "2");  // 1.5 CPUs rounded up, as the kubelet does
  CHECK(readFile(dir / "mem") == "64");

  // Another pod asks for a field the node does not project: it waits, saying which.
  const std::string other = "apps/pod/node-name";
  pod["spec"]["volumes"][0]["downwardAPI"]["items"] = {
      {{"path", "node"}, {"fieldRef", {{"fieldPath", "spec.nodeName"}}}}};
  pod["metadata"]["name"] = "node-name";
  pod["metadata"]["uid"] = "uid-node-name";
  desired.put(other, pod.dump());
  a->changed({other});
  CHECK(sink.waitingReason(other, "app") == "CreateContainerConfigError");
  json status = sink.pod(other);
  CHECK(status["containerStatuses"][0]["state"]["waiting"]
            .value("message", "")
            .find("volume info: downwardAPI fieldPath spec.nodeName is not supported") !=
        std::string::npos);
}

TEST_CASE("projected volume fields that cannot be used are refused naming the field") {
  auto parse = [](json volume) {
    json pod = busyboxPod("p", "uid-p", "img:1", {{"app", "true"}});
    pod["spec"]["volumes"] = {volume};
    return deploy::parsePod("default/pod/p", pod.dump(), "default");
  };
  json v = kubeApiAccessVolume("kube-api-access-abcde");
  CHECK(parse(v).isOk());
  auto refused = [&](json bad, const std::string& says) {
    auto r = parse(bad);
    REQUIRE_FALSE(r.isOk());
    INFO(r.status().message());
    CHECK(r.status().message().find(says) != std::string::npos);
  };
  json b = v;
  b["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] = 60;
  refused(b, "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds");
  b = v;
  b["projected"]["sources"][0]["serviceAccountToken"]["path"] = "../../etc/shadow";
  refused(b, "sources[0].serviceAccountToken.path");
  b = v;
  b["projected"]["sources"][1]["configMap"]["items"][0]["path"] = "/etc/passwd";
  refused(b, "sources[1].configMap.items[0].path");
  b = v;
  b["projected"]["defaultMode"] = 04755;
  refused(b, "projected.defaultMode: must be a file mode");
  b = v;
  b["projected"]["sources"][0]["serviceAccountToken"]["audience"] = "a b";
  refused(b, "audience");
  b = v;
  b["projected"]["sources"][2] = {{"clusterTrustBundle", json::object()}};
  refused(b, "sources[2].clusterTrustBundle: not a projection this node supports");
  b = v;
  b["projected"]["sources"][2]["downwardAPI"]["items"][0]["resourceFieldRef"] = {
      {"resource", "limits.ephemeral-storage"}};
  b["projected"]["sources"][2]["downwardAPI"]["items"][0].erase("fieldRef");
  refused(b, "resourceFieldRef.resource: limits.ephemeral-storage is not supported");
}

TEST_CASE("two sources projecting the same path keep the pod's volume from being made") {
  json pod = busyboxPod("p", "uid-p", "img:1", {{"app", "true"}});
  json v = kubeApiAccessVolume("v");
  v["projected"]["sources"][2]["downwardAPI"]["items"][0]["path"] = "ca.crt";
  pod["spec"]["volumes"] = {v};
  auto spec = deploy::parsePod("default/pod/p", pod.dump(), "default");
  REQUIRE(spec.isOk());
  MemoryDesired desired;
  desired.put("default/configmap/kube-root-ca.crt", json{{"data", {{"ca.crt", kCa}}}}.dump());
  auto files = deploy::projectedFiles(
      *spec, spec->volumes[0], desired,
      [](const deploy::PodSpec&, const std::string&, const deploy::ProjectionSource&) {
        return core::Result<std::string>(std::string("t"));
      });
  REQUIRE_FALSE(files.isOk());
  CHECK(files.status().message() == "path ca.crt is projected by two sources");
}

}  // namespace
}  // namespace outpost::test
