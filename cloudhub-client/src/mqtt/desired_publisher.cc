#include "outpost/cloudhub/desired_publisher.h"

#include <openssl/sha.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "bootstrap/tls_probe.h"
#include "outpost/cloudhub/mqtt_link.h"
#include "outpost/mqttc/client.h"

namespace outpost::cloudhub {

using nlohmann::json;

namespace {

// A name-based uuid (SHA-1, version 5 layout): the same scope and key always give the same uid.
std::string stableUid(const std::string& text) {
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d);
  d[6] = static_cast<unsigned char>((d[6] & 0x0f) | 0x50);
  d[8] = static_cast<unsigned char>((d[8] & 0x3f) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 0xf];
  }
  return out;
}

class MqttDesiredPublisher final : public DesiredPublisher {
 public:
  explicit MqttDesiredPublisher(PublisherOptions o) : opts_(std::move(o)), topics_{opts_.prefix} {}

  core::Status connectNow() {
    mqttc::ConnectOptions c;
    c.uri = opts_.broker;
    c.clientId = "outpostctl-" + newMessageId().substr(0, 8);
    c.cleanSession = true;
    c.username = opts_.username;
    c.password = opts_.password;
    c.caFile = opts_.caFile;
    c.certFile = opts_.certFile;
    c.keyFile = opts_.keyFile;
    c.connectTimeout = std::chrono::duration_cast<std::chrono::seconds>(opts_.timeout);
    mqttc::Callbacks cb;
    cb.connected = [this] { signal(connected_, core::okStatus()); };
    cb.down = [this](std::string why) { signal(connected_, core::unavailable(why)); };
    cb.message = [this](std::string topic, std::string payload, bool) {
      std::lock_guard l(mu_);
      retained_[topic] = std::move(payload);
      cv_.notify_all();
    };
    client_ = std::make_unique<mqttc::Client>(c, std::move(cb));
    OUTPOST_RETURN_IF_ERROR(client_->connect());
    auto s = waitFor(connected_);
    if (!s.isOk() && mqttc::isTlsUri(opts_.broker)) {
      if (auto probe = probeTls(c, opts_.timeout); !probe.isOk())
        return probe.withContext("TLS with " + opts_.broker);
    }
    return s;
  }

  core::Result<std::vector<Published>> apply(const Scope& scope,
                                             const std::vector<DesiredObject>& objects) override {
    auto manifest = readManifest(scope);
    if (!manifest.isOk()) return manifest.status();
    json m = std::move(manifest).value();
    int64_t nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    std::vector<Published> out;
    for (const auto& obj : objects) {
      json o = json::parse(obj.json, nullptr, false);
      if (!o.is_object()) return core::invalidArgument(obj.key + ": not a JSON object");
      int64_t previous = 0;
      if (auto it = m["objects"].find(obj.key); it != m["objects"].end() && it->is_string()) {
        previous = std::stoll(it->get<std::string>());
      }
      std::string version = std::to_string(std::max(previous + 1, nowMs));
      auto& meta = o["metadata"];
      if (!meta.is_object()) meta = json::object();
      meta["resourceVersion"] = version;
      if (!meta.contains("uid")) meta["uid"] = stableUid(scopeName(scope) + "/" + obj.key);
      Envelope env;
      env.header.msgId = newMessageId();
      env.header.timestamp = nowMs;
      env.header.resourceVersion = version;
      env.route.source = "outpostctl";
      env.route.group = "resource";
      env.route.operation = previous == 0 ? "insert" : "update";
      env.route.resource = obj.key;
      env.content = o.dump();
      OUTPOST_RETURN_IF_ERROR(
          publish(desiredTopic(scope, obj.key), encode(env, opts_.encoding), true));
      m["objects"][obj.key] = version;
      m["version"] = version;  // the newest version assigned in this scope
      out.push_back({obj.key, version, env.header.msgId});
    }
    OUTPOST_RETURN_IF_ERROR(writeManifest(scope, m));
    return out;
  }

  core::Status prefetchManifests(const std::vector<Scope>& scopes) override {
    std::vector<std::string> topics;
    for (const auto& s : scopes) {
      std::string t = manifestTopic(s);
      std::lock_guard l(mu_);
      if (known_.insert(t).second) topics.push_back(t);
    }
    constexpr size_t kPage = 200;
    for (size_t i = 0; i < topics.size(); i += kPage) {
      std::vector<std::string> page(
          topics.begin() + static_cast<long>(i),
          topics.begin() + static_cast<long>(std::min(i + kPage, topics.size())));
      auto w = std::make_shared<Waiter>();
      client_->subscribe(page, [this, w](core::Status s) { signal(*w, std::move(s)); });
      OUTPOST_RETURN_IF_ERROR(waitFor(*w).withContext("subscribing to manifests"));
    }
    if (!topics.empty()) {
      // The retained manifests follow the acknowledgements at once; absent ones never come.
      std::unique_lock l(mu_);
      cv_.wait_for(l, opts_.manifestWait, [] { return false; });
    }
    return core::okStatus();
  }

  core::Result<std::vector<std::string>> remove(const Scope& scope,
                                                const std::vector<std::string>& keys) override {
    auto manifest = readManifest(scope);
    if (!manifest.isOk()) return manifest.status();
    json m = std::move(manifest).value();
    std::vector<std::string> removed;
    for (const auto& key : keys) {
      OUTPOST_RETURN_IF_ERROR(
          publish(desiredTopic(scope, key), "", true));  // clears the retained copy
      if (m["objects"].erase(key) > 0) removed.push_back(key);
    }
    OUTPOST_RETURN_IF_ERROR(writeManifest(scope, m));
    return removed;
  }

 private:
  struct Waiter {
    bool done = false;
    core::Status status;
  };

  void signal(Waiter& w, core::Status s) {
    std::lock_guard l(mu_);
    if (w.done) return;
    w.done = true;
    w.status = std::move(s);
    cv_.notify_all();
  }

  core::Status waitFor(Waiter& w) {
    std::unique_lock l(mu_);
    if (!cv_.wait_for(l, opts_.timeout, [&] { return w.done; })) {
      return core::deadlineExceeded("no answer from " + opts_.broker + " within " +
                                    std::to_string(opts_.timeout.count()) + " ms");
    }
    return w.status;
  }

  core::Status publish(const std::string& topic, std::string payload, bool retained) {
    auto w = std::make_shared<Waiter>();
    client_->publish(topic, std::move(payload), retained,
                     [this, w](core::Status s) { signal(*w, std::move(s)); });
    return waitFor(*w).withContext("publishing " + topic);
  }

  static std::string scopeName(const Scope& s) {
    return (s.kind == Scope::Kind::kNode ? "node:" : "group:") + s.name;
  }
  std::string desiredTopic(const Scope& s, const std::string& key) const {
    return s.kind == Scope::Kind::kNode ? topics_.desired(s.name, key)
                                        : topics_.groupDesired(s.name, key);
  }
  std::string manifestTopic(const Scope& s) const {
    return s.kind == Scope::Kind::kNode ? topics_.manifest(s.name) : topics_.groupManifest(s.name);
  }

  core::Result<json> readManifest(const Scope& scope) {
    std::string topic = manifestTopic(scope);
    bool known = false;
    {
      std::lock_guard l(mu_);
      known = known_.count(topic) > 0;
    }
    if (!known) {
      auto w = std::make_shared<Waiter>();
      client_->subscribe({topic}, [this, w](core::Status s) { signal(*w, std::move(s)); });
      OUTPOST_RETURN_IF_ERROR(waitFor(*w).withContext("subscribing to " + topic));
    }
    // A retained manifest follows the subscription's acknowledgement at once; none means a new
    // scope.
    std::unique_lock l(mu_);
    if (!known) cv_.wait_for(l, opts_.manifestWait, [&] { return retained_.count(topic) > 0; });
    json m = json{{"generation", 0}, {"objects", json::object()}};
    if (auto it = retained_.find(topic); it != retained_.end() && !it->second.empty()) {
      json parsed = json::parse(it->second, nullptr, false);
      if (parsed.is_object() && parsed.contains("objects") && parsed["objects"].is_object())
        m = parsed;
    }
    return m;
  }

  core::Status writeManifest(const Scope& scope, json m) {
    m["generation"] = m.value("generation", int64_t{0}) + 1;
    std::string text = m.dump();
    {
      std::lock_guard l(mu_);
      retained_[manifestTopic(scope)] = text;
    }
    return publish(manifestTopic(scope), text, true);
  }

  PublisherOptions opts_;
  MqttTopics topics_;
  std::unique_ptr<mqttc::Client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  Waiter connected_;
  std::map<std::string, std::string> retained_;
  std::set<std::string> known_;  // manifest topics subscribed by prefetchManifests
};

}  // namespace

core::Result<std::unique_ptr<DesiredPublisher>> DesiredPublisher::connect(
    const PublisherOptions& options) {
  auto p = std::make_unique<MqttDesiredPublisher>(options);
  OUTPOST_RETURN_IF_ERROR(p->connectNow());
  return std::unique_ptr<DesiredPublisher>(std::move(p));
}

}  // namespace outpost::cloudhub
