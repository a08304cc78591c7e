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

TEST_CASE("an agent upgrade's status stays on the node: CloudCore has no such resource") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls), [](Agent& a) {
    metadb::WriteBatch b;
    b.enqueue({"agentupgradestatus", "default/agentupgrade/agent",
               R"({"phase":"healthy","version":"0.2.0-1"})", 0});
    b.enqueue({"nodestatus", kNodeKey, nodeStatus("4").dump(), -1});
    a.write(std::move(b));
  });
  // Taken out of the outbox (not retried for ever), and nothing about it reached the cloud.
  REQUIRE(waitFor([&] {
    auto node = hub.object(kNodeKey);
    return node && node->value("status", json::object()).contains("capacity");
  }));
  CHECK(waitFor([&] { return agent.outboxRows() == 0; }));
  CHECK(hub.receivedWhere("", "default/agentupgrade/").empty());
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

namespace {

json secret(const std::string& name, size_t bytes) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata",
           {{"name", name},
            {"namespace", "default"},
            {"uid", "uid-" + name},
            {"resourceVersion", "7"}}},
          {"data", {{"blob", std::string(bytes, 'A')}}}};
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("a Secret as large as the API server allows is taken and acknowledged") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));  // the default limit
  REQUIRE(waitFor([&] { return agent.connected(); }));
  // 1.4 MiB of data: within etcd's 1.5 MiB object limit.
  std::string id = hub.sendObject("insert", "default/secret/big", secret("big", 1400 << 10));
  CHECK(waitFor([&] { return hub.acked(id); }, 10s));
  CHECK(agent.get("default/secret/big").has_value());
}

TEST_CASE(
    "a message over the limit is reported once, never acked, and keeps the link out of step") {
  Setup s;
  auto ho = hubOptions(s.tls);
  ho.resendInterval = 300ms;
  CloudHubDouble hub(ho);
  auto o = linkOptions(hub.url(), s.tls);
  o.maxMessageBytes = 256 << 10;
  o.resyncQuietHeartbeats = 2;  // 2 s with a 1 s heartbeat
  Agent agent(s.dir.path(), o);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  std::string id = hub.sendObject("insert", "default/secret/big", secret("big", 300 << 10));
  auto beats = countOf(hub.received(), "keepalive", "node");
  // Past the quiet window, with the cloud resending all along.
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "keepalive", "node") >= beats + 4; },
                      10s));
  CHECK(hub.resends() >= 5);
  CHECK_FALSE(hub.acked(id));
  CHECK_FALSE(agent.get("default/secret/big").has_value());
  std::string log = agent.log();
  CHECK(occurrences(log, "ignored cloud message frame: ") == 1);  // the warning, once
  CHECK(log.find("more than cloud.max_message_bytes") != std::string::npos);
  CHECK(log.find("in step with the cloud") == std::string::npos);
  CHECK(agent.link->status().messagesInvalid >= 5);
}

TEST_CASE("a pod whose spec.nodeName names another node is refused and reported, once") {
  Setup s;
  auto ho = hubOptions(s.tls);
  ho.resendInterval = 300ms;
  CloudHubDouble hub(ho);
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  json other = pod("elsewhere", 5);
  other["spec"]["nodeName"] = "edge-2";
  std::string id = hub.sendObject("insert", "default/pod/elsewhere", other);
  // The cloud hears why (an error answer), and the pod is not stored, so it never runs here.
  REQUIRE(hub.waitFor([&](const auto& f) {
    for (const auto& frame : f)
      if (route(frame, "operation") == "error" &&
          frame.envelope["header"].value("parent_msg_id", "") == id)
        return true;
    return false;
  }));
  CHECK_FALSE(agent.get("default/pod/elsewhere").has_value());
  CHECK(agent.log().find("misaddressed: spec.nodeName is edge-2") != std::string::npos);
  // Its own pods run as before.
  json mine = pod("here", 5);
  mine["spec"]["nodeName"] = kNode;
  std::string ok = hub.sendObject("insert", "default/pod/here", mine);
  REQUIRE(waitFor([&] { return hub.acked(ok); }));
  CHECK(agent.get("default/pod/here").has_value());
}

namespace {

// The link's answer to a token request, waited for with a deadline.
core::Result<std::string> askToken(Agent& agent, const std::string& ns, const std::string& sa,
                                   const json& tokenRequest) {
  auto p = std::make_shared<std::promise<core::Result<std::string>>>();
  auto f = p->get_future();
  agent.link->requestToken(ns, sa, tokenRequest.dump(), 5s,
                           [p](core::Result<std::string> r) { p->set_value(std::move(r)); });
  if (f.wait_for(10s) != std::future_status::ready) return core::deadlineExceeded("no answer");
  return f.get();
}

json tokenRequestFor(const std::string& sa, const std::string& pod, const std::string& uid) {
  return {
      {"kind", "TokenRequest"},
      {"apiVersion", "authentication.k8s.io/v1"},
      {"metadata", {{"name", sa}, {"namespace", "default"}}},
      {"spec",
       {{"audiences", nullptr},
        {"expirationSeconds", 3607},
        {"boundObjectRef", {{"kind", "Pod"}, {"apiVersion", "v1"}, {"name", pod}, {"uid", uid}}}}}};
}

}  // namespace

// Issue 17 item 3: EdgeCore's meta manager asks the cloud for a pod's token (edged / meta / query
// <ns>/serviceaccounttoken/<name>, content the TokenRequest); CloudCore answers with the
// TokenRequest and its status, or the API server's refusal.
TEST_CASE(
    "a service-account token is asked as EdgeCore asks; the cloud's TokenRequest comes back, "
    "its refusals as errors") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  hub.setObject("default/pod/web",
                {{"metadata", {{"name", "web"}, {"namespace", "default"}, {"uid", "uid-web"}}},
                 {"spec", {{"containers", {{{"name", "c"}, {"image", "i"}}}}}}});
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));

  auto r = askToken(agent, "default", "default", tokenRequestFor("default", "web", "uid-web"));
  REQUIRE(r.isOk());
  json answer = json::parse(*r);
  CHECK(answer["kind"] == "TokenRequest");
  CHECK(answer["status"]["token"] == hub.tokensIssued().at(0)["status"]["token"]);
  CHECK(answer["status"]["expirationTimestamp"].is_string());
  auto queries = hub.receivedWhere("query", "default/serviceaccounttoken/default");
  REQUIRE(queries.size() == 1);
  json q = queries[0].envelope;
  CHECK(q["route"]["source"] == "edged");
  CHECK(q["route"]["group"] == "meta");
  json content =
      q["content"].is_string() ? json::parse(q["content"].get<std::string>()) : q["content"];
  CHECK(content == tokenRequestFor("default", "web", "uid-web"));

  // The API server's refusals: another incarnation of the pod, a service account it lacks.
  auto stale = askToken(agent, "default", "default", tokenRequestFor("default", "web", "old"));
  REQUIRE_FALSE(stale.isOk());
  CHECK(stale.status().message().find("does not match the UID in record") != std::string::npos);
  auto noSa = askToken(agent, "default", "builder", tokenRequestFor("builder", "web", "uid-web"));
  REQUIRE_FALSE(noSa.isOk());
  CHECK(noSa.status().code() == core::Code::kNotFound);
  CHECK(noSa.status().message() == "serviceaccounts \"builder\" not found");
  // A name that cannot be one is refused before anything is sent.
  auto bad = askToken(agent, "../etc", "default", tokenRequestFor("default", "web", "uid-web"));
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().code() == core::Code::kInvalidArgument);
  CHECK(hub.receivedWhere("query", "../etc").empty());
}

// Issue 17 item 8a: a refused object is reported once per version, whatever the reason, not at
// each of the cloud's resends.
TEST_CASE("an object refused for its content is reported once per version, not once per resend") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  json wrong = pod("renamed", 5);  // stored under another name than its own
  wrong["spec"]["nodeName"] = kNode;
  auto refusedAnswers = [&] {
    size_t n = 0;
    for (const auto& frame : hub.received())
      if (route(frame, "operation") == "error") ++n;
    return n;
  };
  hub.sendObject("insert", "default/pod/other", wrong);
  hub.sendObject("insert", "default/pod/other", wrong);  // the same version again
  REQUIRE(waitFor([&] { return refusedAnswers() == 2; }));
  CHECK(occurrences(agent.log(), "ignored cloud message default/pod/other: metadata.name") == 1);
  wrong["metadata"]["resourceVersion"] = "6";
  hub.sendObject("update", "default/pod/other", wrong);
  REQUIRE(waitFor([&] { return refusedAnswers() == 3; }));
  CHECK(occurrences(agent.log(), "ignored cloud message default/pod/other: metadata.name") == 2);
  CHECK_FALSE(agent.get("default/pod/other").has_value());
}

// Seen under load in agent_websocket_test: a pod's terminated status was replaced in the outbox
// while its running status was on the wire, and the delete went before it. The delete waits for
// any status row of its pod; here one that is queued to go after it.
TEST_CASE("a pod's delete waits for its status still in the outbox, whatever its place") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  std::string inserted =
      hub.sendObject("insert", "default/pod/web", pod("web", 5, "busybox", "uid-web"));
  REQUIRE(waitFor([&] { return hub.acked(inserted); }));
  metadb::WriteBatch b;
  b.enqueue({"podstatus", "default/pod/web", R"({"phase":"Succeeded"})", -1});
  b.enqueue({"poddelete", "default/pod/web", R"({"uid":"uid-web"})", 0});
  agent.write(std::move(b));
  agent.link->outboxChanged();
  REQUIRE(waitFor([&] { return !hub.receivedWhere("delete", "default/pod/web").empty(); }));
  auto ask = hub.receivedWhere("delete", "default/pod/web")[0];
  auto patches = hub.receivedWhere("patch", "default/podpatch/web");
  REQUIRE(patches.size() == 1);
  CHECK(patches[0].at < ask.at);
  CHECK(patches[0].envelope.dump().find("Succeeded") != std::string::npos);
  CHECK(waitFor([&] { return agent.outboxRows() == 0; }));
}
