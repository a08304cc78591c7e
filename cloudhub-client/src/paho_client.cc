#include "paho_client.h"

#include <MQTTAsync.h>
#include <mqtt/async_client.h>

#include <map>
#include <mutex>

#include "outpost/cloudhub/mqtt_library.h"
#include "outpost/core/net.h"

namespace outpost::cloudhub {

namespace {

constexpr int kMaxBufferedMessages = 10000;

// Forwards one operation's outcome; owned by the Impl until Paho is done with it.
class OpListener final : public mqtt::iaction_listener {
 public:
  explicit OpListener(std::function<void(core::Status)> done) : done_(std::move(done)) {}
  void on_success(const mqtt::token&) override { finish(core::okStatus()); }
  void fail(core::Status s) { finish(std::move(s)); }
  void on_failure(const mqtt::token& tok) override {
    std::string why = "MQTT error " + std::to_string(tok.get_return_code());
    if (tok.get_reason_code() != 0)
      why += " (reason " + std::to_string(tok.get_reason_code()) + ")";
    finish(core::unavailable(why));
  }

 private:
  void finish(core::Status s) {
    std::function<void(core::Status)> done;
    {
      std::lock_guard lock(mu_);
      done = std::exchange(done_, nullptr);
    }
    if (done) done(std::move(s));
  }
  std::mutex mu_;
  std::function<void(core::Status)> done_;
};

}  // namespace

void leaveOpensslInitToOpenssl() {
  MQTTAsync_init_options o = MQTTAsync_init_options_initializer;
  o.do_openssl_init = 0;
  MQTTAsync_global_init(&o);
}

class PahoClient::Impl {
 public:
  Impl(MqttConnectOptions o, MqttCallbacks cb) : opts_(std::move(o)), cb_(std::move(cb)) {}

  core::Status init() {
    try {
      // Paho refuses a publish once 100 wait in its queue (error -12); a burst of acks can
      // exceed that, so allow many more (bounded by what the outbox drain and acks put in flight).
      client_ =
          std::make_unique<mqtt::async_client>(opts_.uri, opts_.clientId, kMaxBufferedMessages,
                                               static_cast<mqtt::iclient_persistence*>(nullptr));
    } catch (const std::exception& e) {
      return core::invalidArgument("MQTT client for " + opts_.uri + ": " + e.what());
    }
    client_->set_connection_lost_handler([this](const std::string& cause) {
      if (cb_.failed) cb_.failed(cause.empty() ? "connection lost" : "connection lost: " + cause);
    });
    client_->set_message_callback([this](mqtt::const_message_ptr msg) {
      if (cb_.message) cb_.message(msg->get_topic(), msg->get_payload_str(), msg->is_retained());
    });
    return core::okStatus();
  }

  OpListener& listener(std::function<void(core::Status)> done) {
    std::lock_guard lock(mu_);
    // Finished listeners are released here, well after Paho called them.
    for (auto it = finished_.begin(); it != finished_.end();) {
      listeners_.erase(*it);
      it = finished_.erase(it);
    }
    uint64_t id = nextId_++;
    auto l = std::make_unique<OpListener>([this, id, done = std::move(done)](core::Status s) {
      if (done) done(std::move(s));
      std::lock_guard l2(mu_);
      finished_.push_back(id);
    });
    auto& ref = *l;
    listeners_.emplace(id, std::move(l));
    return ref;
  }

  core::Status connect() {
    auto builder = mqtt::connect_options_builder()
                       .clean_session(opts_.cleanSession)
                       .keep_alive_interval(opts_.keepAlive)
                       .connect_timeout(opts_.connectTimeout)
                       .automatic_reconnect(false);
    if (!opts_.username.empty()) builder.user_name(opts_.username);
    if (!opts_.password.empty()) builder.password(opts_.password);
    if (!opts_.willTopic.empty()) {
      builder.will(mqtt::message(opts_.willTopic, opts_.willPayload, 1, opts_.willRetained));
    }
    bool tls = opts_.uri.rfind("ssl://", 0) == 0 || opts_.uri.rfind("wss://", 0) == 0 ||
               opts_.uri.rfind("mqtts://", 0) == 0;
    if (tls) {
      auto ssl = mqtt::ssl_options_builder();
      if (!opts_.caFile.empty()) ssl.trust_store(opts_.caFile);
      if (!opts_.certFile.empty()) ssl.key_store(opts_.certFile);
      if (!opts_.keyFile.empty()) ssl.private_key(opts_.keyFile);
      // No error handler: Paho keeps a pointer to a temporary options object for it. A failed TLS
      // connect is explained by probeTls() instead.
      ssl.enable_server_cert_auth(true).verify(true).ssl_version(MQTT_SSL_VERSION_TLS_1_2);
      builder.ssl(ssl.finalize());
    }
    auto& l = listener([this](core::Status s) {
      if (s.isOk()) {
        // Without this every ack written after a PUBACK waits ~40 ms for the broker's delayed ACK.
        core::disableNagleTowards(core::uriPort(opts_.uri.c_str()));
        if (cb_.connected) cb_.connected();
      } else if (cb_.failed) {
        cb_.failed("connect to " + opts_.uri + " failed: " + s.message());
      }
    });
    try {
      client_->connect(builder.finalize(), nullptr, l);
    } catch (const std::exception& e) {
      return core::unavailable("connect to " + opts_.uri + ": " + e.what());
    }
    return core::okStatus();
  }

  void subscribe(const std::vector<std::string>& topics, std::function<void(core::Status)> done) {
    auto& l = listener(std::move(done));
    try {
      auto coll = mqtt::string_collection::create(topics);
      client_->subscribe(coll, mqtt::iasync_client::qos_collection(topics.size(), 1), nullptr, l);
    } catch (const std::exception& e) {
      l.fail(core::unavailable(std::string("subscribe: ") + e.what()));
    }
  }

  void publish(const std::string& topic, std::string payload, bool retained,
               std::function<void(core::Status)> done) {
    auto& l = listener(std::move(done));
    try {
      auto msg = mqtt::make_message(topic, std::move(payload), 1, retained);
      client_->publish(msg, nullptr, l);
    } catch (const std::exception& e) {
      l.fail(core::unavailable(std::string("publish: ") + e.what()));
    }
  }

  void disconnect(std::chrono::milliseconds timeout) {
    try {
      if (client_->is_connected()) {
        client_->disconnect(static_cast<int>(timeout.count()))->wait_for(timeout);
      }
    } catch (const std::exception&) {
      // Already gone: nothing to do.
    }
  }

  MqttConnectOptions opts_;
  MqttCallbacks cb_;
  std::unique_ptr<mqtt::async_client> client_;
  std::mutex mu_;
  uint64_t nextId_ = 1;
  std::map<uint64_t, std::unique_ptr<OpListener>> listeners_;
  std::vector<uint64_t> finished_;
};

PahoClient::PahoClient(MqttConnectOptions options, MqttCallbacks callbacks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(callbacks))) {}

PahoClient::~PahoClient() {
  if (impl_->client_) {
    impl_->disconnect(std::chrono::milliseconds(500));
    try {
      impl_->client_->set_connection_lost_handler(nullptr);
      impl_->client_->set_message_callback(nullptr);
    } catch (const std::exception&) {
      // Paho refuses while a connect is pending; destroying the client below ends it anyway.
    }
    impl_->client_.reset();
  }
}

core::Status PahoClient::connect() {
  if (!impl_->client_) OUTPOST_RETURN_IF_ERROR(impl_->init());
  return impl_->connect();
}

void PahoClient::subscribe(const std::vector<std::string>& topics,
                           std::function<void(core::Status)> done) {
  impl_->subscribe(topics, std::move(done));
}

void PahoClient::publish(const std::string& topic, std::string payload, bool retained,
                         std::function<void(core::Status)> done) {
  impl_->publish(topic, std::move(payload), retained, std::move(done));
}

void PahoClient::disconnect(std::chrono::milliseconds timeout) {
  if (impl_->client_) impl_->disconnect(timeout);
}

bool PahoClient::connected() const { return impl_->client_ && impl_->client_->is_connected(); }

}  // namespace outpost::cloudhub
