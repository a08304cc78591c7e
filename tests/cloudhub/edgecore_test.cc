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
