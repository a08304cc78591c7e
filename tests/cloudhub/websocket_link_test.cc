// The KubeEdge WebSocket link against the CloudHub test double (a real TLS WebSocket server on
// loopback, real certificates made by openssl, a real SQLite store): what the cloud sees on the
// wire, and what survives drops and restarts.
#include <set>

#include "websocket_link_harness.h"

using namespace outpost;
using namespace outpost::test;
using namespace outpost::test::ws;
using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("the link connects on the CloudHub path with the node's headers and certificate") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected() && hub.openConnections() == 1; }));
  auto c = hub.connections().at(0);
  CHECK(c.path == "/e632aba927ea4ac2b575ec1603d56f10/edge-1/events");
  CHECK(c.headers["node_id"] == kNode);
  CHECK(c.headers["project_id"] == "e632aba927ea4ac2b575ec1603d56f10");
  CHECK(c.headers["connectionuse"] == "msg");
  CHECK(c.clientCn == kCn);
  CHECK(c.clientO == "system:nodes");
  CHECK(agent.link->status().endpoint == hub.url());
}

TEST_CASE("a server certificate from another CA is refused, with the reason in the log") {
  Setup s;
  TempDir other;
  TlsFiles stranger = makeTlsFiles(other.path(), kCn, "system:nodes");
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  o.caFile = stranger.ca;  // the node trusts a CA that did not sign the server's certificate
  Agent agent(s.dir.path(), o);
  REQUIRE(
      waitFor([&] { return agent.log().find("certificate verify failed") != std::string::npos; }));
  CHECK_FALSE(agent.connected());
  CHECK(hub.received().empty());
  CHECK(agent.link->status().reconnects >= 1);
}

TEST_CASE("a client certificate from an untrusted CA is refused by the cloud") {
  Setup s;
  TempDir other;
  TlsFiles stranger = makeTlsFiles(other.path(), kCn, "system:nodes");
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  o.certFile = stranger.clientCert;  // signed by a CA the cloud does not know
  o.keyFile = stranger.clientKey;
  Agent agent(s.dir.path(), o);
  REQUIRE(waitFor([&] { return !hub.refusals().empty(); }));
  REQUIRE(waitFor(
      [&] { return agent.log().find("TLS with " + hub.url() + " failed") != std::string::npos; }));
  CHECK_FALSE(agent.connected());
  CHECK(hub.openConnections() == 0);
}

TEST_CASE("a client certificate for another node is refused, and the log says what is expected") {
  Setup s;
  CloudHubDoubleOptions h = hubOptions(s.tls);
  h.requireCn = "system:node:edge-2";  // the cloud knows this node by another name
  CloudHubDouble hub(h);
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return !hub.refusals().empty(); }));
  REQUIRE(waitFor(
      [&] { return agent.log().find("refused the WebSocket upgrade") != std::string::npos; }));
  CHECK(agent.log().find("CN system:node:edge-1") != std::string::npos);
  CHECK_FALSE(agent.connected());
}

TEST_CASE("start-up sequence and cadence: keepalive, membership, registration once, lease, node") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  const std::string nodeKey = "default/node/edge-1";
  const std::string leaseKey = "kube-node-lease/lease/edge-1";
  // The lease did not exist: queried, then inserted, then renewed (updates) every interval.
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "update", leaseKey) >= 3; }, 10s));
  auto frames = hub.received();
  auto seq = sequence(frames);
  REQUIRE(seq.size() >= 5);
  CHECK(seq[0] == "keepalive node");
  CHECK(seq[1] == "get membership/detail");
  CHECK(seq[2] == "insert " + nodeKey);
  CHECK(seq[3] == "query " + leaseKey);
  CHECK(seq[4] == "query " + nodeKey);
  // The node's status goes once the cloud answered the registration (the node exists then).
  auto patch = std::find(seq.begin(), seq.end(), "patch default/nodepatch/edge-1");
  REQUIRE(patch != seq.end());
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "response", nodeKey) >= 1; }));
  for (const json& answer : hub.sent()) {
    if (answer.value("route", json::object()).value("resource", "") == "default/nodepatch/edge-1")
      CHECK_FALSE(answer["content"].contains("ErrStatus"));
  }
  CHECK(countOf(frames, "insert", leaseKey) == 1);
  auto firstUpdate = std::find(seq.begin(), seq.end(), "update " + leaseKey);
  auto insert = std::find(seq.begin(), seq.end(), "insert " + leaseKey);
  CHECK(insert < firstUpdate);
  // Keepalive: source websocket, content "ping"; the membership request names the node.
  CHECK(route(frames[0], "source") == "websocket");
  CHECK(frames[0].envelope["content"] == "ping");
  json membership = json::parse(frames[1].envelope["content"].get<std::string>());
  CHECK(membership["group_id"] == kNode);
  CHECK(membership["event_type"] == "group_membership_event");
  // The registered Node carries no kind, uid or resourceVersion.
  json node = frames[2].envelope["content"];
  CHECK(node["metadata"]["name"] == kNode);
  CHECK_FALSE(node.contains("kind"));
  CHECK_FALSE(node["metadata"].contains("uid"));
  // The lease renewals keep the cloud's lease current.
  auto lease = hub.object(leaseKey);
  REQUIRE(lease.has_value());
  CHECK((*lease)["spec"]["holderIdentity"] == kNode);
  // Keepalives and node queries keep coming.
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "keepalive", "node") >= 3; }, 10s));
  CHECK(countOf(hub.received(), "query", nodeKey) >= 3);
  // The cloud's answers to the node insert, node query and lease operations are acknowledged.
  bool ackedAnswer = false;
  for (const auto& f : hub.received()) {
    if (route(f, "operation") == "response" && route(f, "resource") == leaseKey &&
        f.envelope["content"] == "OK")
      ackedAnswer = true;
  }
  CHECK(ackedAnswer);
  // A reconnect repeats keepalive, membership and the lease query, not the registration.
  hub.closeConnections();
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "get", "membership/detail") >= 2; }));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  CHECK(countOf(hub.received(), "insert", nodeKey) == 1);
  CHECK(hub.pings() >= 1);  // WebSocket ping frames, besides the keepalive messages
}

TEST_CASE(
    "a pod inserted by the cloud is stored, then acked; a resend is acked again, harmlessly") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  std::string id = hub.sendObject("insert", "default/pod/web", pod("web", 5));
  REQUIRE(waitFor([&] { return hub.acked(id); }));
  auto stored = agent.get("default/pod/web");
  REQUIRE(stored.has_value());
  CHECK(stored->version == 5);
  CHECK(stored->uid == "uid-web");
  // The ack: operation response, parent_msg_id = the cloud's msg_id, same resource, "OK".
  for (const auto& f : hub.receivedWhere("response", "default/pod/web")) {
    CHECK(f.envelope["header"]["parent_msg_id"] == id);
    CHECK(f.envelope["content"] == "OK");
    CHECK(route(f, "source") == "edgecontroller");
    CHECK(route(f, "group") == "resource");
  }
  // The same message again (as CloudHub resends): acked again, nothing changes.
  json again = {{"header", {{"msg_id", id}, {"resourceversion", "5"}}},
                {"route",
                 {{"source", "edgecontroller"},
                  {"group", "resource"},
                  {"operation", "insert"},
                  {"resource", "default/pod/web"}}},
                {"content", pod("web", 5, "nginx")}};
  hub.send(again);
  REQUIRE(waitFor([&] { return hub.ackCount(id) >= 2; }));
  auto after = agent.get("default/pod/web");
  REQUIRE(after.has_value());
  CHECK(after->version == 5);
  CHECK(after->object == stored->object);
}

TEST_CASE("a stale resource version is dropped and still acked") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  std::string fresh = hub.sendObject("update", "default/pod/web", pod("web", 7, "nginx"));
  REQUIRE(waitFor([&] { return hub.acked(fresh); }));
  std::string stale = hub.sendObject("update", "default/pod/web", pod("web", 6, "busybox"));
  REQUIRE(waitFor([&] { return hub.acked(stale); }));
  auto stored = agent.get("default/pod/web");
  REQUIRE(stored.has_value());
  CHECK(stored->version == 7);
  CHECK(stored->object.find("nginx") != std::string::npos);
  CHECK(hub.unacked().empty());
}

TEST_CASE("a cloud delete removes the object by key and uid, and is acked") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  std::string inserted =
      hub.sendObject("insert", "default/pod/web", pod("web", 5, "busybox", "uid-2"));
  REQUIRE(waitFor([&] { return hub.acked(inserted); }));
  // A delete of an older incarnation (another uid) leaves the stored object alone.
  std::string old = hub.sendObject("delete", "default/pod/web", pod("web", 6, "busybox", "uid-1"));
  REQUIRE(waitFor([&] { return hub.acked(old); }));
  CHECK(agent.get("default/pod/web").has_value());
  std::string del = hub.sendObject("delete", "default/pod/web", pod("web", 6, "busybox", "uid-2"));
  REQUIRE(waitFor([&] { return hub.acked(del); }));
  CHECK_FALSE(agent.get("default/pod/web").has_value());
}

TEST_CASE("pod and node status from the outbox reach the cloud as podpatch and nodepatch") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  std::string inserted = hub.sendObject("insert", "default/pod/web", pod("web", 5));
  REQUIRE(waitFor([&] { return hub.acked(inserted); }));
  agent.enqueue("podstatus", "default/pod/web", R"({"phase":"Running"})");
  agent.enqueue("nodestatus", "default/node/edge-1",
                R"({"conditions":[{"type":"Ready","status":"True"}]})");
  REQUIRE(hub.waitFor([](const auto& f) {
    return countOf(f, "patch", "default/podpatch/web") >= 1 &&
           countOf(f, "patch", "default/nodepatch/edge-1") >= 1;
  }));
  auto patches = hub.receivedWhere("patch", "default/podpatch/web");
  REQUIRE(patches.size() == 1);
  CHECK(route(patches[0], "source") == "edged");
  CHECK(route(patches[0], "group") == "meta");
  json content = json::parse(patches[0].envelope["content"].get<std::string>());
  CHECK(content["metadata"]["uid"] == "uid-web");
  CHECK(content["status"]["phase"] == "Running");
  auto nodePatches = hub.receivedWhere("patch", "default/nodepatch/edge-1");
  json last = json::parse(nodePatches.back().envelope["content"].get<std::string>());
  CHECK(last["status"]["conditions"][0]["type"] == "Ready");
  // Answered by the cloud: the rows leave the outbox; answers to patches are not acked.
  REQUIRE(waitFor([&] { return agent.outboxRows() == 0; }));
  CHECK(hub.receivedWhere("response", "default/podpatch/web").empty());
}

TEST_CASE("a silently dropped connection is found within 2 x heartbeat and the link reconnects") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  Agent agent(s.dir.path(), o);
  REQUIRE(waitFor([&] { return agent.connected() && hub.openConnections() == 1; }));
  // Stay connected past several read deadlines: pongs and answers keep it alive.
  REQUIRE(hub.waitFor([&](const auto& f) { return countOf(f, "keepalive", "node") >= 4; }));
  CHECK(agent.link->status().reconnects == 0);
  hub.setForwarding(false);
  // 2 x heartbeat, the deadline check's granularity (heartbeat / 4), and scheduling slack.
  CHECK(waitFor(
      [&] { return !agent.connected(); },
      std::chrono::duration_cast<std::chrono::milliseconds>(2 * o.heartbeat + o.heartbeat / 4) +
          500ms));
  CHECK(agent.log().find("read deadline") != std::string::npos);
  hub.setForwarding(true);
  REQUIRE(waitFor([&] { return agent.connected() && hub.connections().size() >= 2; }));
  CHECK(agent.metrics.render().find(
            "outpost_cloud_read_deadline_expired_total{transport=\"websocket\"} 1") !=
        std::string::npos);
}

TEST_CASE("pong frames alone keep a quiet connection alive past the read deadline") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  // Nothing but pongs answers the node for several deadlines: no lease or node queries.
  o.leaseInterval = 1h;
  o.nodeQueryInterval = 1h;
  Agent agent(s.dir.path(), o);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  REQUIRE(hub.waitFor([](const auto& f) { return countOf(f, "keepalive", "node") >= 6; }));
  CHECK(hub.pings() >= 4);
  CHECK(agent.link->status().reconnects == 0);
  CHECK(agent.connected());
}

TEST_CASE("an agent restart mid-stream loses no acknowledged object") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  std::vector<std::string> ids;
  {
    Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
    REQUIRE(waitFor([&] { return agent.connected(); }));
    for (int i = 0; i < 40; ++i)
      ids.push_back(hub.sendObject("insert", "default/pod/p" + std::to_string(i),
                                   pod("p" + std::to_string(i), 10 + i)));
    REQUIRE(waitFor([&] { return hub.acked(ids[5]); }));
  }  // stopped while messages are still arriving
  std::set<std::string> ackedBefore;
  for (const auto& id : ids)
    if (hub.acked(id)) ackedBefore.insert(id);
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ackedBefore.count(ids[i])) continue;
    auto stored = agent.get("default/pod/p" + std::to_string(i));
    REQUIRE(stored.has_value());
    CHECK(stored->version == static_cast<int64_t>(10 + i));
  }
  // The rest arrive by the cloud's resends to the restarted agent.
  REQUIRE(waitFor([&] { return hub.unacked().empty(); }, 20s));
  for (size_t i = 0; i < ids.size(); ++i)
    CHECK(agent.get("default/pod/p" + std::to_string(i)).has_value());
}

TEST_CASE("bad frames are counted and ignored; the link goes on") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  hub.send(
      {{"route", {{"operation", "explode"}, {"resource", "default/pod/x"}}}, {"content", nullptr}});
  hub.send({{"route", {{"operation", "insert"}, {"resource", "default/pod/y"}}},
            {"content", "not an object"}});
  hub.send(
      {{"route", {{"operation", "insert"}, {"resource", "no-key"}}}, {"content", pod("z", 1)}});
  std::string fine = hub.sendObject("insert", "default/pod/fine", pod("fine", 3));
  REQUIRE(waitFor([&] { return hub.acked(fine); }));
  REQUIRE(waitFor([&] { return agent.link->status().messagesInvalid >= 3; }));
  std::string m = agent.metrics.render();
  CHECK(m.find("outpost_cloud_messages_invalid_total{reason=\"invalid\"} 2") != std::string::npos);
  CHECK(m.find("outpost_cloud_messages_invalid_total{reason=\"misaddressed\"} 1") !=
        std::string::npos);
  CHECK(agent.connected());
  CHECK_FALSE(agent.get("default/pod/y").has_value());
}

TEST_CASE(
    "an object with a host path in a uid or a key is refused at the door: an error answer, no ack, "
    "nothing stored") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  json evil = pod("evil", 4);
  evil["metadata"]["uid"] = "../../../../srv/victim";
  std::string id = hub.sendObject("insert", "default/pod/evil", evil);
  json cm = {{"metadata", {{"name", "cfg"}, {"namespace", "default"}, {"resourceVersion", "2"}}},
             {"data", {{"/etc/cron.d/x", "* * * * * root sh"}}}};
  std::string cmId = hub.sendObject("insert", "default/configmap/cfg", cm);
  // EdgeCore's answer to what it cannot store: operation error, parent_msg_id, the reason.
  auto answered = [&](const std::string& msgId, const std::string& field) {
    for (const auto& f : hub.receivedWhere("error")) {
      if (f.envelope["header"]["parent_msg_id"] == msgId &&
          f.envelope["content"].get<std::string>().find(field) != std::string::npos)
        return true;
    }
    return false;
  };
  REQUIRE(waitFor([&] { return answered(id, "metadata.uid") && answered(cmId, "data key"); }));
  std::string fine = hub.sendObject("insert", "default/pod/fine", pod("fine", 3));
  REQUIRE(waitFor([&] { return hub.acked(fine); }));
  CHECK_FALSE(hub.acked(id));
  CHECK_FALSE(hub.acked(cmId));
  CHECK_FALSE(agent.get("default/pod/evil").has_value());
  CHECK_FALSE(agent.get("default/configmap/cfg").has_value());
  CHECK(agent.metrics.render().find("outpost_cloud_messages_invalid_total{reason=\"invalid\"}") !=
        std::string::npos);
}

TEST_CASE("changed credentials: the link reconnects with the files' new contents") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected() && hub.openConnections() == 1; }));
  std::string firstSerial = hub.connections().at(0).clientSerial;
  // A new certificate from the same CA replaces the files (as rotation does).
  TempDir next;
  std::filesystem::copy_file(s.dir / "ca.crt", next / "ca.crt");
  std::filesystem::copy_file(s.dir / "ca.key", next / "ca.key");
  std::string err;
  REQUIRE(run({"/bin/sh", "-c",
               "cd " + next.path().string() +
                   " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "
                   "'/O=system:nodes/CN=" +
                   kCn +
                   "' -keyout client.key -out client.csr 2>/dev/null && openssl x509 -req -in "
                   "client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt "
                   "2>/dev/null"},
              nullptr, &err) == 0);
  std::filesystem::copy_file(next / "client.crt", s.tls.clientCert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(next / "client.key", s.tls.clientKey,
                             std::filesystem::copy_options::overwrite_existing);
  agent.link->credentialsChanged();
  REQUIRE(waitFor([&] {
    auto cs = hub.connections();
    return cs.size() >= 2 && cs.back().open && agent.connected();
  }));
  CHECK(hub.connections().back().clientSerial != firstSerial);
}

// Issue 9 item 2: queries answered by parent_msg_id, stored as an insert from the cloud.
TEST_CASE("a configmap query is answered by the cloud, stored as an insert would be, and acked") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  const std::string key = "default/configmap/app-cfg";
  hub.setObject(key, configMap("app-cfg", 12, "fast"));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  auto r = agent.ask(key, 2s);
  REQUIRE(r.has_value());
  CHECK(r->status.isOk());
  CHECK(r->source == cloudhub::QuerySource::kCloud);
  CHECK(r->reason == "found");
  REQUIRE(r->object.has_value());
  CHECK(json::parse(*r->object)["data"]["mode"] == "fast");
  CHECK(r->resourceVersion == 12);
  auto stored = agent.get(key);
  REQUIRE(stored.has_value());
  CHECK(stored->version == 12);
  CHECK(stored->uid == "uid-app-cfg");
  CHECK(stored->origin == "cloud");
  // On the wire: edged / meta / query, content null; the answer is acked by its msg_id.
  auto queries = hub.receivedWhere("query", key);
  REQUIRE(queries.size() == 1);
  CHECK(route(queries[0], "source") == "edged");
  CHECK(route(queries[0], "group") == "meta");
  CHECK(queries[0].envelope["content"].is_null());
  std::string answerId;
  for (const auto& m : hub.sent())
    if (m["header"].value("parent_msg_id", "") == queries[0].envelope["header"]["msg_id"])
      answerId = m["header"]["msg_id"];
  REQUIRE_FALSE(answerId.empty());
  REQUIRE(waitFor([&] { return hub.acked(answerId); }));
  // An older copy from the cloud does not overwrite a newer stored one (versions only move on).
  agent.write(upsert(key, configMap("app-cfg", 20, "newer")));
  auto again = agent.ask(key, 2s);
  REQUIRE(again.has_value());
  CHECK(again->source == cloudhub::QuerySource::kCloud);
  CHECK(again->resourceVersion == 20);
  CHECK(again->reason == "found; the store holds a newer version");
  CHECK(agent.get(key)->version == 20);
}

TEST_CASE("a query of an object the cloud does not hold says not found and leaves the store") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls));
  REQUIRE(waitFor([&] { return agent.connected(); }));
  auto r = agent.ask("default/secret/app-token", 2s);
  REQUIRE(r.has_value());
  CHECK(r->status.isOk());
  CHECK(r->source == cloudhub::QuerySource::kCloud);
  CHECK(r->reason == "not found");
  CHECK_FALSE(r->object.has_value());
  CHECK_FALSE(agent.get("default/secret/app-token").has_value());
  // A resource that names no queryable object is refused with the reason, without a frame.
  auto bad = agent.ask("default/frobnicator/x", 2s);
  REQUIRE(bad.has_value());
  CHECK(bad->status.code() == core::Code::kInvalidArgument);
  CHECK(bad->status.message().find("default/frobnicator/x") != std::string::npos);
  CHECK(hub.receivedWhere("query", "default/frobnicator/").empty());
}

TEST_CASE("a silent cloud: after the query's timeout the store's copy answers") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  const std::string key = "default/configmap/app-cfg";
  Agent agent(s.dir.path(), linkOptions(hub.url(), s.tls),
              [&](Agent& a) { a.write(upsert(key, configMap("app-cfg", 3, "cached"))); });
  REQUIRE(waitFor([&] { return agent.connected(); }));
  hub.setAnswerQueries(false, "default/configmap/");
  auto r = agent.ask(key, 300ms);
  REQUIRE(r.has_value());
  CHECK(r->source == cloudhub::QuerySource::kStore);
  CHECK(r->reason.rfind("timeout", 0) == 0);
  REQUIRE(r->object.has_value());
  CHECK(json::parse(*r->object)["data"]["mode"] == "cached");
  CHECK(r->resourceVersion == 3);
  CHECK(hub.receivedWhere("query", key).size() == 1);  // it was asked, and nothing came
  CHECK(agent.metrics.render().find(
            "outpost_cloud_requests_timed_out_total{transport=\"websocket\"} 1") !=
        std::string::npos);
  CHECK(agent.connected());
}

TEST_CASE("offline, the store answers a query at once") {
  Setup s;
  const std::string key = "default/configmap/app-cfg";
  // Nobody listens there: the link stays offline.
  auto o = linkOptions("wss://127.0.0.1:" + std::to_string(freePort()), s.tls);
  Agent agent(s.dir.path(), o,
              [&](Agent& a) { a.write(upsert(key, configMap("app-cfg", 4, "cached"))); });
  REQUIRE(waitFor([&] { return agent.link->status().reconnects >= 1; }));
  // Far shorter than the query's own timeout: the answer does not wait for it.
  auto r = agent.ask(key, 1h, 5s);
  REQUIRE(r.has_value());
  CHECK(r->source == cloudhub::QuerySource::kStore);
  CHECK(r->reason.rfind("offline", 0) == 0);
  REQUIRE(r->object.has_value());
  CHECK(r->resourceVersion == 4);
  auto absent = agent.ask("default/secret/none", 1h, 5s);
  REQUIRE(absent.has_value());
  CHECK(absent->source == cloudhub::QuerySource::kStore);
  CHECK_FALSE(absent->object.has_value());
}

// Issue 9 item 2: lastSync for WebSocket = the moment the cloud's resend after a connect is over
// (node query answered, no desired-state message for resyncQuietHeartbeats heartbeats), then
// every later answer to the node query.
TEST_CASE("lastSync is set once the cloud's resend after connecting is quiet, and moves on") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  o.resyncQuietHeartbeats = 2;  // 2 s with a 1 s heartbeat
  Agent agent(s.dir.path(), o);
  REQUIRE(waitFor([&] { return agent.connected(); }));
  CHECK_FALSE(agent.link->status().lastSync.has_value());
  // The cloud keeps sending for a while: no lastSync while it does.
  std::string last;
  for (int i = 0; i < 6; ++i) {
    last = hub.sendObject("insert", "default/pod/p" + std::to_string(i),
                          pod("p" + std::to_string(i), 5));
    REQUIRE(waitFor([&] { return hub.acked(last); }));
    CHECK_FALSE(agent.link->status().lastSync.has_value());
    hub.waitFor([](const auto&) { return false; }, 400ms);  // bounded pause between messages
  }
  REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
  auto first = *agent.link->status().lastSync;
  CHECK(agent.link->status().state == cloudhub::LinkState::kConnected);
  // Node query answers (every 300 ms here) move it on while connected.
  REQUIRE(waitFor([&] { return *agent.link->status().lastSync > first; }));
  // Offline it stays where it was.
  hub.setForwarding(false);
  REQUIRE(waitFor([&] { return !agent.connected(); }));
  auto frozen = agent.link->status().lastSync;
  REQUIRE(frozen.has_value());
  hub.waitFor([](const auto&) { return false; }, 500ms);
  CHECK(agent.link->status().lastSync == frozen);
}

TEST_CASE("lastSync survives a restart, also one that finds the cloud unreachable") {
  Setup s;
  std::optional<core::WallTime> first;
  core::WallTime stoppedAt;
  {
    CloudHubDouble hub(hubOptions(s.tls));
    auto o = linkOptions(hub.url(), s.tls);
    o.resyncQuietHeartbeats = 1;
    Agent agent(s.dir.path(), o);
    REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
    first = agent.link->status().lastSync;
    // Node query answers move it on while connected; the store keeps a recent one.
    REQUIRE(waitFor([&] { return *agent.link->status().lastSync > *first; }));
    stoppedAt = std::chrono::system_clock::now();
  }
  auto o = linkOptions("wss://127.0.0.1:" + std::to_string(freePort()), s.tls);
  Agent agent(s.dir.path(), o);
  auto restored = agent.link->status().lastSync;
  REQUIRE(restored.has_value());
  CHECK(core::toUnixMillis(*restored) >= core::toUnixMillis(*first));
  CHECK(*restored <= stoppedAt);
  CHECK_FALSE(agent.connected());
}

// Issue 9 item 3: the needs_full_resync mark (store recovered empty) goes only once the resend is
// over and every pod deploy keeps unnamed (it asks about each) was settled by the cloud.
TEST_CASE(
    "needs_full_resync stays while a kept pod is unsettled and goes once the cloud settles it") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  o.resyncQuietHeartbeats = 2;
  hub.setAnswerQueries(false, "default/pod/");
  Agent agent(s.dir.path(), o, [](Agent& a) {
    metadb::WriteBatch b;
    b.putKv(std::string(metadb::kKvNeedsFullResync), "1");
    a.write(std::move(b));
  });
  // Deploy asks about a pod it keeps running unnamed, before the link is even connected.
  auto offline = agent.ask("default/pod/kept", 500ms);
  REQUIRE(offline.has_value());
  REQUIRE(waitFor([&] { return agent.connected(); }));
  REQUIRE(waitFor([&] { return agent.link->status().lastSync.has_value(); }));
  // The resend is over, but the cloud has not answered for the kept pod: the mark stays.
  CHECK(agent.kv(metadb::kKvNeedsFullResync) == std::optional<std::string>("1"));
  REQUIRE(hub.waitFor([](const auto& f) { return countOf(f, "query", "default/pod/kept") >= 2; }));
  CHECK(agent.kv(metadb::kKvNeedsFullResync) == std::optional<std::string>("1"));
  CHECK(agent.log().find("has not settled 1 pod kept running unnamed") != std::string::npos);
  // The cloud answers again: it still wants the pod. Stored (deploy adopts it), and the mark goes.
  hub.setObject("default/pod/kept", pod("kept", 8));
  hub.setAnswerQueries(true);
  REQUIRE(waitFor([&] { return !agent.kv(metadb::kKvNeedsFullResync).has_value(); }, 15s));
  auto kept = agent.get("default/pod/kept");
  REQUIRE(kept.has_value());
  CHECK(kept->version == 8);
}

TEST_CASE("needs_full_resync goes after the quiet resend when no pod is kept unnamed") {
  Setup s;
  CloudHubDouble hub(hubOptions(s.tls));
  auto o = linkOptions(hub.url(), s.tls);
  o.resyncQuietHeartbeats = 2;
  Agent agent(s.dir.path(), o, [](Agent& a) {
    metadb::WriteBatch b;
    b.putKv(std::string(metadb::kKvNeedsFullResync), "1");
    a.write(std::move(b));
  });
  REQUIRE(waitFor([&] { return agent.connected(); }));
  // The cloud resends what it holds for the node: the mark stays while it does.
  for (int i = 0; i < 8; ++i) {  // 8 x 400 ms: longer than the 2 s quiet window
    std::string id = hub.sendObject("insert", "default/pod/r" + std::to_string(i),
                                    pod("r" + std::to_string(i), 5));
    REQUIRE(waitFor([&] { return hub.acked(id); }));
    CHECK(agent.kv(metadb::kKvNeedsFullResync) == std::optional<std::string>("1"));
    hub.waitFor([](const auto&) { return false; }, 400ms);  // bounded pause between messages
  }
  CHECK(agent.kv(metadb::kKvNeedsFullResync) == std::optional<std::string>("1"));
  REQUIRE(waitFor([&] { return !agent.kv(metadb::kKvNeedsFullResync).has_value(); }));
  CHECK(agent.link->status().lastSync.has_value());
}
