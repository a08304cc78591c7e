// The MQTT transport (mqtt/mqtt_transport.h).

#include "mqtt/mqtt_transport.h"

#include <future>

namespace outpost::cloudhub {

TransportEvents MqttTransport::current() {
  std::lock_guard lock(mu_);
  return events_;
}

core::Status MqttTransport::connect(core::Duration deadline, TransportEvents events) {
  (void)deadline;
  {
    std::lock_guard lock(mu_);
    events_ = std::move(events);
  }
  if (!client_) {
    mqttc::Callbacks cb;
    cb.connected = [this] {
      if (auto ev = current(); ev.opened) ev.opened();
    };
    cb.down = [this](std::string why) {
      if (auto ev = current(); ev.closed) ev.closed(std::move(why));
    };
    cb.message = [this](std::string topic, std::string payload, bool) {
      if (auto ev = current(); ev.frame)
        ev.frame(Incoming{std::move(topic), std::move(payload), 0});
    };
    // A payload over the limit is refused in the library's callback, before any copy of it.
    cb.oversized = [this](std::string topic, size_t bytes) {
      if (auto ev = current(); ev.frame) ev.frame(Incoming{std::move(topic), "", bytes});
    };
    client_ = std::make_unique<mqttc::Client>(opts_, std::move(cb));
  }
  return client_->connect();
}

void MqttTransport::send(Outgoing out, std::function<void(core::Status)> done) {
  if (!client_) return done(core::unavailable("not connected"));
  client_->publish(out.channel, std::move(out.payload), out.retained, std::move(done));
}

void MqttTransport::subscribe(const std::vector<std::string>& filters,
                              std::function<void(core::Status)> done) {
  if (client_) client_->subscribe(filters, std::move(done));
}

void MqttTransport::unsubscribe(const std::vector<std::string>& filters) {
  if (client_) client_->unsubscribe(filters, nullptr);
}

// Paho reconnects nothing by itself here: a lost connection is already down when the session
// closes it. Only an attempt the session gave up on (its deadline) is ended.
void MqttTransport::close() {
  if (client_ && client_->connected()) client_->disconnect(std::chrono::milliseconds(500));
}

void MqttTransport::shutdown() {
  if (!client_) return;
  if (client_->connected() && !opts_.willTopic.empty()) {
    // A clean disconnect does not fire the will: say it ourselves.
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    client_->publish(opts_.willTopic, opts_.willPayload, opts_.willRetained,
                     [done](core::Status) { done->set_value(); });
    fut.wait_for(std::chrono::milliseconds(300));
  }
  client_.reset();  // disconnects and joins Paho's threads: no callback runs after this
}

}  // namespace outpost::cloudhub
