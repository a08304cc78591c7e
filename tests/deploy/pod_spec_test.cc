// Parsing the Kubernetes Pod JSON: what runs, what is refused, what is reported unsupported.

#include "pod_spec.h"

#include <doctest/doctest.h>

#include <set>

#include "deploy_fixture.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;

TEST_CASE("a pod's containers, env, mounts, limits and policies are parsed") {
  json pod = test::busyboxPod("web", "u1", "img:1", {{"app", "sleep 1"}});
  pod["spec"]["restartPolicy"] = "OnFailure";
  pod["spec"]["runtimeClassName"] = "runc-alt";
  pod["spec"]["containers"][0]["resources"] = {{"limits", {{"cpu", "500m"}, {"memory", "64Mi"}}}};
  pod["spec"]["containers"][0]["volumeMounts"] = {{{"name", "cfg"}, {"mountPath", "/etc/cfg"}}};
  pod["spec"]["containers"][0]["ports"] = {{{"containerPort", 80}}};  // no effect, not reported
  pod["spec"]["volumes"] = {{{"name", "cfg"}, {"configMap", {{"name", "cm"}}}}};
  pod["spec"]["nodeSelector"] = {{"a", "b"}};
  auto p = parsePod("default/pod/web", pod.dump(), "default");
  REQUIRE(p.isOk());
  CHECK(p->restartPolicy == RestartPolicy::kOnFailure);
  CHECK(p->runtimeClassName == "runc-alt");
  CHECK(p->containers[0].cpuLimitMilli == 500);
  CHECK(p->containers[0].memoryLimitBytes == 64 * 1024 * 1024);
  CHECK(p->containers[0].pullPolicy == PullPolicy::kIfNotPresent);
  CHECK(p->volumes[0].kind == VolumeSpec::Kind::kConfigMap);
  CHECK(p->unsupported.empty());
}

TEST_CASE("unsupported fields are listed by path, never silently ignored") {
  json pod = test::busyboxPod("web", "u1", "img:1", {{"app", "sleep 1"}});
  pod["spec"]["containers"][0]["readinessProbe"] = {{"exec", {{"command", {"true"}}}}};
  pod["spec"]["containers"][0]["livenessProbe"] = {{"httpGet", {{"port", 80}}}};
  pod["spec"]["volumes"] = {{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "x"}}}}};
  pod["spec"]["shareProcessNamespace"] = true;
  auto p = parsePod("default/pod/web", pod.dump(), "default");
  REQUIRE(p.isOk());
  std::set<std::string> got(p->unsupported.begin(), p->unsupported.end());
  CHECK(got.count("spec.containers[0].readinessProbe"));
  CHECK(got.count("spec.containers[0].livenessProbe.httpGet"));
  CHECK(got.count("spec.volumes[0].persistentVolumeClaim"));
  CHECK(got.count("spec.shareProcessNamespace"));
}

TEST_CASE("a pod that cannot run is refused with the reason") {
  CHECK_FALSE(parsePod("k", "{not json", "default").isOk());
  CHECK_FALSE(parsePod("k", R"({"metadata":{"name":"a"},"spec":{}})", "default").isOk());
  CHECK_FALSE(
      parsePod("k", R"({"metadata":{"name":"a"},"spec":{"containers":[{"name":"c"}]}})", "default")
          .isOk());
}

TEST_CASE("quantities follow Kubernetes' notation") {
  CHECK(parseCpuMilli("2") == 2000);
  CHECK(parseCpuMilli("250m") == 250);
  CHECK(parseCpuMilli("0.5") == 500);
  CHECK(parseBytes("128Mi") == 128LL * 1024 * 1024);
  CHECK(parseBytes("1G") == 1000000000LL);
  CHECK_FALSE(parseBytes("12 parsecs").has_value());
}

TEST_CASE("the default pull policy is Always for :latest or no tag") {
  for (auto [image, policy] : {std::pair<const char*, PullPolicy>{"busybox", PullPolicy::kAlways},
                               {"busybox:latest", PullPolicy::kAlways},
                               {"localhost:5000/busybox", PullPolicy::kAlways},
                               {"busybox:1.36", PullPolicy::kIfNotPresent}}) {
    auto pod = test::busyboxPod("a", "u", image, {{"c", "true"}});
    auto p = parsePod("k", pod.dump(), "default");
    REQUIRE(p.isOk());
    CHECK(p->containers[0].pullPolicy == policy);
  }
}

}  // namespace
}  // namespace outpost::deploy
