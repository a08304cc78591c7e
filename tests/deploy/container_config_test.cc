// The CRI container-config builder alone: from a pod spec to the sandbox's and containers' CRI
// configurations, the cgroup values of CPU and memory first.

#include "container_config.h"

#include <doctest/doctest.h>

#include "deploy_fixture.h"
#include "labels.h"
#include "pod_spec.h"

namespace outpost::test {
namespace {

// A pod of one container whose `resources` and securityContexts are the arguments.
deploy::PodSpec pod(const nlohmann::json& resources, const nlohmann::json& podSecurity = {},
                    const nlohmann::json& containerSecurity = {}) {
  auto json = busyboxPod("web", "uid-web", "img:1", {{"app", "run"}});
  json["spec"]["hostNetwork"] = false;
  if (!resources.is_null()) json["spec"]["containers"][0]["resources"] = resources;
  if (!podSecurity.is_null()) json["spec"]["securityContext"] = podSecurity;
  if (!containerSecurity.is_null())
    json["spec"]["containers"][0]["securityContext"] = containerSecurity;
  auto parsed = deploy::parsePod("default/pod/web", json.dump(), "default");
  REQUIRE(parsed.isOk());
  return *parsed;
}

deploy::LinuxResources resourcesOf(const nlohmann::json& resources) {
  auto p = pod(resources);
  return deploy::containerConfig(p, p.containers[0], 0, {}, {}).resources;
}

TEST_CASE("a CPU limit is a quota per 100 ms period; the request is shares of 1024 per CPU") {
  auto r = resourcesOf(
      {{"limits", {{"cpu", "500m"}, {"memory", "64Mi"}}}, {"requests", {{"cpu", "250m"}}}});
  CHECK(r.cpuPeriod == 100000);
  CHECK(r.cpuQuota == 50000);
  CHECK(r.cpuShares == 256);
  CHECK(r.memoryLimitBytes == 64 * 1024 * 1024);

  r = resourcesOf({{"limits", {{"cpu", "2"}}}});
  CHECK(r.cpuPeriod == 100000);
  CHECK(r.cpuQuota == 200000);
  CHECK(r.cpuShares == 2048);  // no request: the limit is the request, as in Kubernetes
  CHECK(r.memoryLimitBytes == 0);
}

TEST_CASE("a request alone sets shares only; the smallest is 2; nothing set is all zero") {
  auto r = resourcesOf({{"requests", {{"cpu", "1500m"}}}});
  CHECK(r.cpuShares == 1536);
  CHECK(r.cpuQuota == 0);
  CHECK(r.cpuPeriod == 0);

  CHECK(resourcesOf({{"requests", {{"cpu", "1m"}}}}).cpuShares == 2);

  r = resourcesOf({});
  CHECK(r.cpuPeriod == 0);
  CHECK(r.cpuQuota == 0);
  CHECK(r.cpuShares == 0);
  CHECK(r.memoryLimitBytes == 0);
}

TEST_CASE("the container's security context defaults to the pod's, field by field") {
  auto p = pod({}, {{"runAsUser", 1000}, {"runAsGroup", 2000}, {"supplementalGroups", {5, 6}}},
               {{"runAsUser", 1001}});
  auto s = deploy::containerSecurity(p, p.containers[0]);
  CHECK(s.runAsUser == 1001);
  CHECK(s.runAsGroup == 2000);
  CHECK(s.supplementalGroups == std::vector<int64_t>{5, 6});
}

TEST_CASE("a container's config carries our labels, its grace period and its attempt's log") {
  auto p = pod({});
  auto cc =
      deploy::containerConfig(p, p.containers[0], 3, {{"A", "1"}}, {{"/data", "/host/data", true}});
  CHECK(cc.name == "app");
  CHECK(cc.attempt == 3);
  CHECK(cc.image == "img:1");
  CHECK(cc.logPath == "app/3.log");
  CHECK(cc.labels.at(deploy::kManaged) == "true");
  CHECK(cc.labels.at(deploy::kPodUid) == "uid-web");
  CHECK(cc.labels.at(deploy::kPodKey) == "default.pod.web");
  CHECK(cc.labels.at(deploy::kContainerName) == "app");
  CHECK(cc.labels.at(deploy::kContainerHash) == p.containers[0].hash);
  CHECK(cc.annotations.at(deploy::kGrace) == "1");
  REQUIRE(cc.env.size() == 1);
  CHECK(cc.env[0].first == "A");
  REQUIRE(cc.mounts.size() == 1);
  CHECK(cc.mounts[0].readOnly);
}

TEST_CASE("a container's stdin, stdinOnce and tty reach its config, for kubectl attach -it") {
  auto plain = pod({});
  auto cc = deploy::containerConfig(plain, plain.containers[0], 0, {}, {});
  CHECK_FALSE(cc.stdin);
  CHECK_FALSE(cc.stdinOnce);
  CHECK_FALSE(cc.tty);
  auto json = busyboxPod("web", "uid-web", "img:1", {{"app", "run"}});
  json["spec"]["containers"][0]["stdin"] = true;
  json["spec"]["containers"][0]["stdinOnce"] = true;
  json["spec"]["containers"][0]["tty"] = true;
  auto parsed = deploy::parsePod("default/pod/web", json.dump(), "default");
  REQUIRE(parsed.isOk());
  CHECK(parsed->unsupported.empty());
  cc = deploy::containerConfig(*parsed, parsed->containers[0], 0, {}, {});
  CHECK(cc.stdin);
  CHECK(cc.stdinOnce);
  CHECK(cc.tty);
  json["spec"]["containers"][0]["tty"] = "yes";
  auto bad = deploy::parsePod("default/pod/web", json.dump(), "default");
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().message() == "spec.containers[0].tty: must be true or false");
}

TEST_CASE("the sandbox's cgroup is pod<uid> under the parent, or the runtime's default") {
  auto p = pod({});
  auto sc = deploy::sandboxConfig(p, 2, "/state/pods/uid-web/logs", "/outpost");
  CHECK(sc.cgroupParent == "/outpost/poduid-web");
  CHECK(sc.attempt == 2);
  CHECK(sc.hostname == "web");
  CHECK(sc.logDirectory == "/state/pods/uid-web/logs");
  CHECK(sc.labels.at(deploy::kSandboxHash) == p.sandboxHash);
  CHECK(deploy::sandboxConfig(p, 0, "", "").cgroupParent.empty());
  p.hostNetwork = true;
  CHECK(deploy::sandboxConfig(p, 0, "", "").hostname.empty());
}

TEST_CASE("the next attempt is one past the highest seen in any sandbox and in this one") {
  CHECK(deploy::nextAttempt(std::nullopt, std::nullopt) == 0);
  CHECK(deploy::nextAttempt(4, std::nullopt) == 5);
  CHECK(deploy::nextAttempt(4, 7) == 8);
  CHECK(deploy::nextAttempt(9, 2) == 10);
}

TEST_CASE("a pod key survives the trip through a label value") {
  CHECK(deploy::labelValue("default/pod/web") == "default.pod.web");
  CHECK(deploy::keyFromLabel("default.pod.web") == "default/pod/web");
  CHECK(deploy::keyFromLabel("default.pod.web.v2") == "default/pod/web.v2");
  CHECK_FALSE(deploy::keyFromLabel("default.configmap.web").has_value());
  CHECK_FALSE(deploy::keyFromLabel("default.pod.").has_value());
  CHECK_FALSE(deploy::keyFromLabel(".pod.web").has_value());
}

}  // namespace
}  // namespace outpost::test
