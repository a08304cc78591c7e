// The KubeEdge protocol part (cloudhub-client/src/kubeedge/edgecore*.cc) against the CloudHub
// double where the double is as strict as CloudCore: the node's registration, its status, and
// what the edge says about its state with the cloud.

#include "websocket_link_harness.h"

using namespace outpost;
using namespace outpost::test;
using namespace outpost::test::ws;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kNodeKey = std::string("default/node/") + kNode;

json nodeStatus(const std::string& cpu) {
  return {{"capacity", {{"cpu", cpu}, {"memory", "1024Ki"}, {"pods", "110"}}},
          {"conditions", json::array({{{"type", "Ready"}, {"status", "True"}}})}};
}

}  // namespace

TEST_CASE("the node's status reaches the cloud as soon as the cloud has created the node") {
  Setup s;
  auto ho = hubOptions(s.tls);
  ho.registrationDelay = 500ms;  // CloudCore creates the Node apart from the edge's patches
  CloudHubDouble hub(ho);
  // The status deploy reports at start waits in the outbox before the link is up.
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls), [](Agent& a) {
    metadb::WriteBatch b;
    b.enqueue({"nodestatus", kNodeKey, nodeStatus("4").dump(), -1});
    a.write(std::move(b));
  });
  // Well within the node status interval: sent once the node exists, not refused and dropped.
  CHECK(waitFor(
      [&] {
        auto node = hub.object(kNodeKey);
        return node && node->value("status", json::object()).contains("capacity");
      },
      5s));
  CHECK(waitFor([&] { return agent.outboxRows() == 0; }));
  // No patch went out before the node existed.
  for (const auto& p : hub.receivedWhere("patch", "default/nodepatch/"))
    CHECK(json::parse(p.envelope["content"].get<std::string>()).contains("status"));
}

TEST_CASE("a link whose cloud stopped answering is not in step, however quiet it is") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  o.resyncQuietHeartbeats = 2;  // 2 s with a 1 s heartbeat
  o.nodeQueryInterval = 10s;    // as deployed: the quiet ends before the next node query
  o.requestTimeout = 1s;
  Agent agent(s.dir.path(), o);
  const std::string nodeKey = kNodeKey;
  // The node query at connect is answered; then the cloud goes silent (the keepalive's pongs go
  // on, so the connection stays up): lease and node queries time out.
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "response", nodeKey) >= 1; }));
  hub.setAnswerQueries(false);
  auto beats = countOf(hub.received(), "keepalive", "node");
  // Four heartbeats: past the quiet (two) and a request timeout.
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "keepalive", "node") >= beats + 4; },
                      10s));
  CHECK(agent.connected());
  CHECK(agent.log().find("in step with the cloud") == std::string::npos);
  CHECK_FALSE(agent.link->status().lastSync.has_value());
  // The cloud answers again: in step.
  hub.setAnswerQueries(true);
  CHECK(waitFor([&] { return agent.link->status().lastSync.has_value(); }, 10s));
  CHECK(agent.log().find("in step with the cloud") != std::string::npos);
}
