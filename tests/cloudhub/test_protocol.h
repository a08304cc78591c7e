#pragma once
// A protocol part for tests of the cloud session (session_test.cc, fake_transport_test.cc).

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "codec/resource_change.h"
#include "session/session.h"

namespace outpost::test {

// The smallest protocol: desired objects are stored, then acked; outbox rows go out by key.
class TestProtocol final : public cloudhub::SessionProtocol {
 public:
  explicit TestProtocol(cloudhub::Session& s, std::string up = "up",
                        std::function<void()> onOpened = {})
      : s_(s), up_(std::move(up)), onOpened_(std::move(onOpened)) {}
  void opened() override {
    if (onOpened_) onOpened_();
  }
  void frame(const cloudhub::Incoming& in) override {
    auto env = s_.decode(in.payload, 1 << 20, "frame");
    if (!env || s_.resolve(*env)) return;
    std::string key = env->route.resource;
    auto change = cloudhub::resourceChangeFrom(*env, key, "cloud");
    if (!change.isOk()) return;
    metadb::WriteBatch batch;
    batch.apply(std::move(change).value());
    s_.storeThenAck(std::move(batch), key, [this, env = *env](const metadb::WriteResult&) {
      cloudhub::Envelope ack = s_.message("meta", "resource", "response", env.route.resource);
      ack.header.parentMsgId = env.header.msgId;
      s_.send(ack, up_, {});
    });
  }
  void sendRow(const metadb::OutboxEntry& e, cloudhub::SendDone done) override {
    s_.send(cloudhub::Outgoing{up_, e.key, false}, std::move(done));
  }
  void ackTwin(const cloudhub::Envelope&) override {}

 private:
  cloudhub::Session& s_;
  std::string up_;
  std::function<void()> onOpened_;
};

// A cloud insert of pod default/<name> at resource version 7, as JSON.
inline std::string podInsert(const std::string& name, const std::string& msgId,
                             const std::string& image = "busybox") {
  nlohmann::json pod = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", name}, {"namespace", "default"}, {"uid", "uid-" + name}}},
      {"spec", {{"containers", nlohmann::json::array({{{"name", "main"}, {"image", image}}})}}}};
  nlohmann::json env = {{"header", {{"msg_id", msgId}, {"timestamp", 1}, {"resourceversion", "7"}}},
                        {"route",
                         {{"source", "edgecontroller"},
                          {"group", "resource"},
                          {"operation", "insert"},
                          {"resource", "default/pod/" + name}}},
                        {"content", pod}};
  return env.dump();
}

}  // namespace outpost::test
