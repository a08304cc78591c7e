#include "support/mqtt_client.h"

#include <mqtt/async_client.h>

#include <atomic>
#include <random>

namespace outpost::test {

class MqttTestClient::Impl {
 public:
  explicit Impl(const std::string& uri, const std::string& id)
      : client(uri, id, static_cast<mqtt::iclient_persistence*>(nullptr)) {}
  mqtt::async_client client;
  mutable std::mutex mu;
  std::vector<ReceivedMessage> received;
};

MqttTestClient::MqttTestClient(const std::string& uri, const TlsFiles* tls,
                               const std::string& clientId) {
  static std::atomic<int> counter{0};
  std::string id = clientId.empty()
                       ? "test-client-" + std::to_string(getpid()) + "-" + std::to_string(counter++)
                       : clientId;
  impl_ = std::make_unique<Impl>(uri, id);
  impl_->client.set_message_callback([this](mqtt::const_message_ptr m) {
    std::lock_guard l(impl_->mu);
    impl_->received.push_back({m->get_topic(), m->get_payload_str(), m->is_retained()});
  });
  auto opts = mqtt::connect_options_builder().clean_session(true).keep_alive_interval(
      std::chrono::seconds(30));
  if (tls) {
    opts.ssl(mqtt::ssl_options_builder()
                 .trust_store(tls->ca)
                 .key_store(tls->clientCert)
                 .private_key(tls->clientKey)
                 .finalize());
  }
  impl_->client.connect(opts.finalize())->wait();
}

MqttTestClient::~MqttTestClient() {
  try {
    impl_->client.disconnect()->wait_for(std::chrono::seconds(2));
  } catch (const std::exception&) {
  }
}

void MqttTestClient::subscribe(const std::string& filter) {
  impl_->client.subscribe(filter, 1)->wait();
}

void MqttTestClient::publish(const std::string& topic, const std::string& payload, bool retained) {
  impl_->client.publish(mqtt::make_message(topic, payload, 1, retained))->wait();
}

std::vector<ReceivedMessage> MqttTestClient::messages() const {
  std::lock_guard l(impl_->mu);
  return impl_->received;
}

std::vector<ReceivedMessage> MqttTestClient::messagesOn(const std::string& filter) const {
  std::vector<ReceivedMessage> out;
  bool prefix = filter.size() >= 1 && filter.back() == '#';
  std::string stem = prefix ? filter.substr(0, filter.size() - 1) : filter;
  for (const auto& m : messages()) {
    if (prefix ? m.topic.rfind(stem, 0) == 0 : m.topic == filter) out.push_back(m);
  }
  return out;
}

void MqttTestClient::clear() {
  std::lock_guard l(impl_->mu);
  impl_->received.clear();
}

}  // namespace outpost::test
