// What the CloudHub double does as the API server (support/kube_admission.h): the pod it stores
// and the tokens it grants, checked on their own.

#include "support/kube_admission.h"

#include <doctest/doctest.h>

using namespace outpost::test;
using nlohmann::json;

namespace {

json pod(const std::string& uid) {
  return {{"metadata", {{"name", "web"}, {"namespace", "default"}, {"uid", uid}}},
          {"spec",
           {{"initContainers", {{{"name", "init"}, {"image", "i"}}}},
            {"containers", {{{"name", "app"}, {"image", "i"}}}}}}};
}

}  // namespace

TEST_CASE("an admitted pod has the kube-api-access volume mounted in every container, once") {
  json admitted = admitPod(pod("u-1"));
  CHECK(admitted["spec"]["serviceAccountName"] == "default");
  REQUIRE(admitted["spec"]["volumes"].size() == 1);
  json v = admitted["spec"]["volumes"][0];
  std::string name = v["name"];
  CHECK(name.starts_with("kube-api-access-"));
  CHECK(name.size() == std::string("kube-api-access-").size() + 5);
  CHECK(v["projected"]["defaultMode"] == 420);
  CHECK(v["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3607);
  CHECK(v["projected"]["sources"][1]["configMap"]["name"] == "kube-root-ca.crt");
  CHECK(v["projected"]["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] ==
        "metadata.namespace");
  for (const char* list : {"initContainers", "containers"}) {
    json m = admitted["spec"][list][0]["volumeMounts"][0];
    CHECK(m["name"] == name);
    CHECK(m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount");
    CHECK(m["readOnly"] == true);
  }
  CHECK(admitPod(admitted) == admitted);    // an update keeps it
  CHECK(admitPod(pod("u-1")) == admitted);  // the same suffix for the same pod
  json off = pod("u-2");
  off["spec"]["automountServiceAccountToken"] = false;
  CHECK_FALSE(admitPod(off)["spec"].contains("volumes"));
  json bare = {{"metadata", {{"name", "x"}}}};
  CHECK(admitPod(bare) == bare);
}

TEST_CASE("a token is granted for an existing pod and service account, capped when told") {
  auto podUid = [](const std::string&, const std::string& name) -> std::optional<std::string> {
    if (name == "web") return std::string("u-1");
    return std::nullopt;
  };
  auto exists = [](const std::string&, const std::string& sa) { return sa == "default"; };
  json tr = {{"kind", "TokenRequest"},
             {"spec",
              {{"expirationSeconds", 3607},
               {"boundObjectRef", {{"kind", "Pod"}, {"name", "web"}, {"uid", "u-1"}}}}}};
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1780000000));
  json error;
  auto a =
      answerTokenRequest(tr, "default", "default", podUid, exists, std::nullopt, now, 1, error);
  REQUIRE(a);
  CHECK((*a)["spec"]["expirationSeconds"] == 3607);
  CHECK((*a)["status"]["expirationTimestamp"] == "2026-05-28T21:26:47Z");  // 1780003607
  auto claims = tokenClaims((*a)["status"]["token"]);
  REQUIRE(claims);
  CHECK((*claims)["sub"] == "system:serviceaccount:default:default");
  CHECK((*claims)["kubernetes.io"]["pod"]["uid"] == "u-1");
  CHECK((*claims)["exp"] == 1780003607);

  auto capped = answerTokenRequest(tr, "default", "default", podUid, exists,
                                   std::chrono::seconds(5), now, 2, error);
  REQUIRE(capped);
  CHECK((*capped)["spec"]["expirationSeconds"] == 5);
  CHECK((*capped)["status"]["token"] != (*a)["status"]["token"]);

  json shortLived = tr;
  shortLived["spec"]["expirationSeconds"] = 599;
  CHECK_FALSE(answerTokenRequest(shortLived, "default", "default", podUid, exists, std::nullopt,
                                 now, 3, error));
  CHECK(error["code"] == 400);
  json other = tr;
  other["spec"]["boundObjectRef"]["uid"] = "u-0";
  CHECK_FALSE(
      answerTokenRequest(other, "default", "default", podUid, exists, std::nullopt, now, 4, error));
  CHECK(error["code"] == 409);
  CHECK_FALSE(
      answerTokenRequest(tr, "default", "builder", podUid, exists, std::nullopt, now, 5, error));
  CHECK(error["reason"] == "NotFound");
}
