#include "mqtt_client.h"

#include <dirent.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "outpost/core/net.h"

namespace outpost::twin {

namespace {

constexpr int kMaxBufferedMessages = 10000;

bool isTlsUri(const std::string& uri) {
  return uri.rfind("ssl://", 0) == 0 || uri.rfind("mqtts://", 0) == 0 ||
         uri.rfind("wss://", 0) == 0;
}

// Hands one operation's outcome to its callback exactly once.
class Listener final : public mqtt::iaction_listener {
 public:
  explicit Listener(std::function<void(core::Status)> done) : done_(std::move(done)) {}
  void on_success(const mqtt::token&) override { finish(core::okStatus()); }
  void on_failure(const mqtt::token& tok) override {
    finish(core::unavailable("MQTT error " + std::to_string(tok.get_return_code())));
  }
  void finish(core::Status s) {
    std::function<void(core::Status)> done;
    {
      std::lock_guard lock(mu_);
      done = std::exchange(done_, nullptr);
    }
    if (done) done(std::move(s));
  }

 private:
  std::mutex mu_;
  std::function<void(core::Status)> done_;
};

}  // namespace

class MqttClient::Impl {
 public:
  Impl(MqttSettings s, MqttHandlers h) : settings_(std::move(s)), handlers_(std::move(h)) {}

  core::Status init() {
    try {
      // Room for a burst of answers: Paho refuses a publish while 100 (its default) wait to be
      // sent, and an answer refused is an answer a device never gets.
      client_ = std::make_unique<mqtt::async_client>(
          settings_.uri, settings_.clientId, kMaxBufferedMessages,
          static_cast<mqtt::iclient_persistence*>(nullptr));
    } catch (const std::exception& e) {
      return core::invalidArgument("MQTT client for " + settings_.uri + ": " + e.what());
    }
    client_->set_connection_lost_handler([this](const std::string& cause) {
      if (handlers_.down) handlers_.down(cause.empty() ? "connection lost" : cause);
    });
    client_->set_message_callback([this](mqtt::const_message_ptr m) {
      if (handlers_.message) handlers_.message(m->get_topic(), m->get_payload_str());
    });
    return core::okStatus();
  }

  // A listener that lives until Paho is done with it: finished ones are freed on a later call,
  // never from inside their own callback.
  Listener& listener(std::function<void(core::Status)> done) {
    std::lock_guard lock(mu_);
    for (uint64_t id : finished_) listeners_.erase(id);
    finished_.clear();
    uint64_t id = nextId_++;
    auto l = std::make_unique<Listener>([this, id, done = std::move(done)](core::Status s) {
      if (done) done(std::move(s));
      std::lock_guard l2(mu_);
      finished_.push_back(id);
    });
    Listener& ref = *l;
    listeners_.emplace(id, std::move(l));
    return ref;
  }

  core::Status connect() {
    auto b = mqtt::connect_options_builder()
                 .clean_session(settings_.cleanSession)
                 .keep_alive_interval(settings_.keepAlive)
                 .connect_timeout(settings_.connectTimeout)
                 .automatic_reconnect(false);
    if (!settings_.username.empty()) b.user_name(settings_.username);
    if (!settings_.password.empty()) b.password(settings_.password);
    if (isTlsUri(settings_.uri)) {
      auto ssl = mqtt::ssl_options_builder();
      if (!settings_.caFile.empty()) ssl.trust_store(settings_.caFile);
      if (!settings_.certFile.empty()) ssl.key_store(settings_.certFile);
      if (!settings_.keyFile.empty()) ssl.private_key(settings_.keyFile);
      // No error handler: Paho would keep a pointer into a temporary options object.
      ssl.enable_server_cert_auth(true).verify(true).ssl_version(MQTT_SSL_VERSION_TLS_1_2);
      b.ssl(ssl.finalize());
    }
    Listener& l = listener([this](core::Status s) {
      if (s.isOk()) {
        core::disableNagleTowards(core::uriPort(settings_.uri.c_str()));
        if (handlers_.connected) handlers_.connected();
      } else if (handlers_.down) {
        handlers_.down("connect to " + settings_.uri + " failed: " + s.message());
      }
    });
    try {
      client_->connect(b.finalize(), nullptr, l);
    } catch (const std::exception& e) {
      return core::unavailable("connect to " + settings_.uri + ": " + e.what());
    }
    return core::okStatus();
  }

  void subscribe(const std::vector<std::string>& filters, std::function<void(core::Status)> done) {
    Listener& l = listener(std::move(done));
    try {
      client_->subscribe(mqtt::string_collection::create(filters),
                         mqtt::iasync_client::qos_collection(filters.size(), 1), nullptr, l);
    } catch (const std::exception& e) {
      l.finish(core::unavailable(std::string("subscribe: ") + e.what()));
    }
  }

  void publish(const std::string& topic, std::string payload,
               std::function<void(core::Status)> done) {
    if (!done) {
      // Nobody waits for the outcome (answers and events): no listener to allocate, register and
      // free for each message.
      try {
        client_->publish(mqtt::make_message(topic, std::move(payload), 1, false));
      } catch (const std::exception&) {
        // Same as a failed publish with a listener: the outcome had no one to go to.
      }
      return;
    }
    Listener& l = listener(std::move(done));
    try {
      client_->publish(mqtt::make_message(topic, std::move(payload), 1, false), nullptr, l);
    } catch (const std::exception& e) {
      l.finish(core::unavailable(std::string("publish: ") + e.what()));
    }
  }

  void disconnect(std::chrono::milliseconds timeout) {
    try {
      if (client_ && client_->is_connected()) {
        client_->disconnect(static_cast<int>(timeout.count()))->wait_for(timeout);
      }
    } catch (const std::exception&) {
      // Already gone.
    }
  }

  MqttSettings settings_;
  MqttHandlers handlers_;
  std::unique_ptr<mqtt::async_client> client_;
  std::mutex mu_;
  uint64_t nextId_ = 1;
  std::map<uint64_t, std::unique_ptr<Listener>> listeners_;
  std::vector<uint64_t> finished_;
};

MqttClient::MqttClient(MqttSettings settings, MqttHandlers handlers)
    : impl_(std::make_unique<Impl>(std::move(settings), std::move(handlers))) {}

MqttClient::~MqttClient() {
  if (!impl_->client_) return;
  impl_->disconnect(std::chrono::milliseconds(500));
  try {
    impl_->client_->set_connection_lost_handler(nullptr);
    impl_->client_->set_message_callback(nullptr);
  } catch (const std::exception&) {
    // Refused while a connect is pending; destroying the client ends it anyway.
  }
  impl_->client_.reset();
}

core::Status MqttClient::connect() {
  if (!impl_->client_) OUTPOST_RETURN_IF_ERROR(impl_->init());
  return impl_->connect();
}

void MqttClient::subscribe(const std::vector<std::string>& filters,
                           std::function<void(core::Status)> done) {
  impl_->subscribe(filters, std::move(done));
}

void MqttClient::publish(const std::string& topic, std::string payload,
                         std::function<void(core::Status)> done) {
  impl_->publish(topic, std::move(payload), std::move(done));
}

void MqttClient::disconnect(std::chrono::milliseconds timeout) { impl_->disconnect(timeout); }

}  // namespace outpost::twin
