// The MQTT client adapter over Paho's C asynchronous library (MQTTAsync).

#include "outpost/mqttc/client.h"

#include <MQTTAsync.h>

#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>

#include "outpost/core/net.h"

namespace outpost::mqttc {

namespace {

// Paho refuses a publish while 100 (its default) wait to be sent; a burst of acks or device answers
// can exceed that, so allow many more (bounded by what the callers put in flight).
constexpr int kMaxBufferedMessages = 10000;

// Paho allocates process-wide state (its trace queue) when the first client is created; two
// threads creating the process's first clients at once allocate it twice and lose one. Clients
// are created one at a time.
std::mutex& creationMutex() {
  static std::mutex mu;
  return mu;
}

std::string describe(const char* what, int code, const char* message) {
  std::string why = std::string(what) + ": MQTT error " + std::to_string(code);
  const char* text = message ? message : MQTTAsync_strerror(code);
  if (text && *text) why += " (" + std::string(text) + ")";
  return why;
}

}  // namespace

bool isTlsUri(const std::string& uri) {
  return uri.rfind("ssl://", 0) == 0 || uri.rfind("mqtts://", 0) == 0 ||
         uri.rfind("wss://", 0) == 0;
}

void leaveOpensslInitToOpenssl() {
  MQTTAsync_init_options o = MQTTAsync_init_options_initializer;
  o.do_openssl_init = 0;
  MQTTAsync_global_init(&o);
}

class Client::Impl {
 public:
  Impl(ConnectOptions o, Callbacks cb) : opts_(std::move(o)), cb_(std::move(cb)) {}

  ~Impl() {
    if (!handle_) return;
    {
      // Waits for a callback that is running; none does anything afterwards.
      std::lock_guard lock(cbMu_);
      closing_ = true;
    }
    disconnect(std::chrono::milliseconds(500));
    MQTTAsync_destroy(&handle_);
    // Operations Paho never answered are dropped with their contexts (no callback after this).
    std::lock_guard lock(opsMu_);
    ops_.clear();
  }

  core::Status create() {
    if (handle_) return core::okStatus();
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = 0;
    co.maxBufferedMessages = kMaxBufferedMessages;
    int rc;
    {
      std::lock_guard lock(creationMutex());
      rc = MQTTAsync_createWithOptions(&handle_, opts_.uri.c_str(), opts_.clientId.c_str(),
                                       MQTTCLIENT_PERSISTENCE_NONE, nullptr, &co);
    }
    if (rc != MQTTASYNC_SUCCESS) {
      handle_ = nullptr;
      return core::invalidArgument(describe(("MQTT client for " + opts_.uri).c_str(), rc, nullptr));
    }
    rc = MQTTAsync_setCallbacks(handle_, this, &Impl::onLost, &Impl::onMessage, nullptr);
    if (rc != MQTTASYNC_SUCCESS) return core::internalError(describe("callbacks", rc, nullptr));
    return core::okStatus();
  }

  core::Status connect() {
    MQTTAsync_connectOptions c = MQTTAsync_connectOptions_initializer;
    c.keepAliveInterval = static_cast<int>(opts_.keepAlive.count());
    c.cleansession = opts_.cleanSession ? 1 : 0;
    c.connectTimeout = static_cast<int>(opts_.connectTimeout.count());
    c.automaticReconnect = 0;
    if (!opts_.username.empty()) c.username = opts_.username.c_str();
    if (!opts_.password.empty()) c.password = opts_.password.c_str();
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    if (!opts_.willTopic.empty()) {
      will.topicName = opts_.willTopic.c_str();
      will.message = nullptr;
      will.payload.data = opts_.willPayload.data();
      will.payload.len = static_cast<int>(opts_.willPayload.size());
      will.qos = 1;
      will.retained = opts_.willRetained ? 1 : 0;
      c.will = &will;
    }
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    if (isTlsUri(opts_.uri)) {
      if (!opts_.caFile.empty()) ssl.trustStore = opts_.caFile.c_str();
      if (!opts_.certFile.empty()) ssl.keyStore = opts_.certFile.c_str();
      if (!opts_.keyFile.empty()) ssl.privateKey = opts_.keyFile.c_str();
      ssl.enableServerCertAuth = 1;
      ssl.verify = 1;
      ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
      c.ssl = &ssl;
    }
    c.context = this;
    c.onSuccess = &Impl::onConnected;
    c.onFailure = &Impl::onConnectFailed;
    int rc = MQTTAsync_connect(handle_, &c);
    if (rc != MQTTASYNC_SUCCESS) {
      return core::unavailable(describe(("connect to " + opts_.uri).c_str(), rc, nullptr));
    }
    return core::okStatus();
  }

  void subscribe(const std::vector<std::string>& filters, std::function<void(core::Status)> done) {
    std::vector<char*> topics;
    topics.reserve(filters.size());
    std::vector<int> qos(filters.size(), 1);
    for (const auto& f : filters) topics.push_back(const_cast<char*>(f.c_str()));
    MQTTAsync_responseOptions r = MQTTAsync_responseOptions_initializer;
    Op* op = track(std::move(done), filters);
    r.context = op;
    r.onSuccess = &Impl::onSubscribed;
    r.onFailure = &Impl::onOpFailed;
    int rc = MQTTAsync_subscribeMany(handle_, static_cast<int>(filters.size()), topics.data(),
                                     qos.data(), &r);
    if (rc != MQTTASYNC_SUCCESS) finish(op, core::unavailable(describe("subscribe", rc, nullptr)));
  }

  void unsubscribe(const std::vector<std::string>& filters,
                   std::function<void(core::Status)> done) {
    std::vector<char*> topics;
    topics.reserve(filters.size());
    for (const auto& f : filters) topics.push_back(const_cast<char*>(f.c_str()));
    MQTTAsync_responseOptions r = MQTTAsync_responseOptions_initializer;
    Op* op = track(std::move(done), {});
    r.context = op;
    r.onSuccess = &Impl::onOpDone;
    r.onFailure = &Impl::onOpFailed;
    int rc =
        MQTTAsync_unsubscribeMany(handle_, static_cast<int>(filters.size()), topics.data(), &r);
    if (rc != MQTTASYNC_SUCCESS)
      finish(op, core::unavailable(describe("unsubscribe", rc, nullptr)));
  }

  void publish(const std::string& topic, std::string payload, bool retained,
               std::function<void(core::Status)> done) {
    MQTTAsync_message m = MQTTAsync_message_initializer;
    m.payload = payload.data();
    m.payloadlen = static_cast<int>(payload.size());
    m.qos = 1;
    m.retained = retained ? 1 : 0;
    if (!done) {
      // Nobody waits for the outcome (answers and events): nothing to track.
      MQTTAsync_sendMessage(handle_, topic.c_str(), &m, nullptr);
      return;
    }
    MQTTAsync_responseOptions r = MQTTAsync_responseOptions_initializer;
    Op* op = track(std::move(done), {});
    r.context = op;
    r.onSuccess = &Impl::onOpDone;
    r.onFailure = &Impl::onOpFailed;
    int rc = MQTTAsync_sendMessage(handle_, topic.c_str(), &m, &r);
    if (rc != MQTTASYNC_SUCCESS) finish(op, core::unavailable(describe("publish", rc, nullptr)));
  }

  void disconnect(std::chrono::milliseconds timeout) {
    if (!handle_ || !MQTTAsync_isConnected(handle_)) return;
    {
      std::lock_guard lock(discMu_);
      discDone_ = false;
    }
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = static_cast<int>(timeout.count());
    d.context = this;
    d.onSuccess = [](void* c, MQTTAsync_successData*) { static_cast<Impl*>(c)->disconnected(); };
    d.onFailure = [](void* c, MQTTAsync_failureData*) { static_cast<Impl*>(c)->disconnected(); };
    if (MQTTAsync_disconnect(handle_, &d) != MQTTASYNC_SUCCESS) return;
    std::unique_lock lock(discMu_);
    discCv_.wait_for(lock, timeout + std::chrono::milliseconds(100), [this] { return discDone_; });
  }

  bool connected() const { return handle_ && MQTTAsync_isConnected(handle_); }

  MQTTAsync handle_ = nullptr;

 private:
  struct Op {
    Impl* impl;
    std::function<void(core::Status)> done;
    std::vector<std::string> filters;  // of a subscribe, to name a refused one
  };

  Op* track(std::function<void(core::Status)> done, std::vector<std::string> filters) {
    auto op = std::make_unique<Op>(Op{this, std::move(done), std::move(filters)});
    Op* raw = op.get();
    std::lock_guard lock(opsMu_);
    ops_.emplace(raw, std::move(op));
    return raw;
  }

  // Hands an operation's outcome to its callback once, and frees the operation.
  void finish(Op* op, core::Status s) {
    std::unique_ptr<Op> owned;
    {
      std::lock_guard lock(opsMu_);
      auto it = ops_.find(op);
      if (it == ops_.end()) return;
      owned = std::move(it->second);
      ops_.erase(it);
    }
    std::lock_guard lock(cbMu_);
    if (!closing_ && owned->done) owned->done(std::move(s));
  }

  template <class F>
  void callback(F&& f) {
    std::lock_guard lock(cbMu_);
    if (!closing_) f();
  }

  void disconnected() {
    {
      std::lock_guard lock(discMu_);
      discDone_ = true;
    }
    discCv_.notify_all();
  }

  static void onConnected(void* ctx, MQTTAsync_successData*) {
    auto* self = static_cast<Impl*>(ctx);
    // Without this every ack written after a PUBACK waits ~40 ms for the broker's delayed ACK.
    core::disableNagleTowards(core::uriPort(self->opts_.uri.c_str()));
    self->callback([self] {
      if (self->cb_.connected) self->cb_.connected();
    });
  }

  static void onConnectFailed(void* ctx, MQTTAsync_failureData* f) {
    auto* self = static_cast<Impl*>(ctx);
    std::string why = describe(("connect to " + self->opts_.uri + " failed").c_str(),
                               f ? f->code : MQTTASYNC_FAILURE, f ? f->message : nullptr);
    self->callback([self, &why] {
      if (self->cb_.down) self->cb_.down(why);
    });
  }

  static void onLost(void* ctx, char* cause) {
    auto* self = static_cast<Impl*>(ctx);
    std::string why =
        cause && *cause ? "connection lost: " + std::string(cause) : "connection lost";
    if (cause) MQTTAsync_free(cause);
    self->callback([self, &why] {
      if (self->cb_.down) self->cb_.down(why);
    });
  }

  static int onMessage(void* ctx, char* topic, int topicLen, MQTTAsync_message* m) {
    auto* self = static_cast<Impl*>(ctx);
    std::string t = topicLen > 0 ? std::string(topic, static_cast<size_t>(topicLen)) : topic;
    auto bytes = static_cast<size_t>(m->payloadlen);
    if (self->opts_.maxPayloadBytes > 0 && bytes > self->opts_.maxPayloadBytes) {
      // Refused where it lies: no copy of a payload nobody will read.
      MQTTAsync_freeMessage(&m);
      MQTTAsync_free(topic);
      self->callback([&] {
        if (self->cb_.oversized) self->cb_.oversized(std::move(t), bytes);
      });
      return 1;
    }
    std::string payload(static_cast<const char*>(m->payload), bytes);
    bool retained = m->retained != 0;
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    self->callback([&] {
      if (self->cb_.message) self->cb_.message(std::move(t), std::move(payload), retained);
    });
    return 1;
  }

  static void onOpDone(void* ctx, MQTTAsync_successData*) {
    auto* op = static_cast<Op*>(ctx);
    op->impl->finish(op, core::okStatus());
  }

  static void onSubscribed(void* ctx, MQTTAsync_successData* d) {
    auto* op = static_cast<Op*>(ctx);
    // The broker grants each filter a QoS, or refuses it with 0x80.
    std::string refused;
    if (d && op->filters.size() == 1 && d->alt.qos == 0x80) refused = op->filters[0];
    if (d && op->filters.size() > 1 && d->alt.qosList) {
      for (size_t i = 0; i < op->filters.size(); ++i) {
        if (d->alt.qosList[i] == 0x80) refused += (refused.empty() ? "" : ", ") + op->filters[i];
      }
    }
    op->impl->finish(
        op, refused.empty()
                ? core::okStatus()
                : core::permissionDenied("the broker refused the subscription to " + refused));
  }

  static void onOpFailed(void* ctx, MQTTAsync_failureData* f) {
    auto* op = static_cast<Op*>(ctx);
    // A single filter the broker refuses (SUBACK 0x80) arrives here, not as a success.
    if (f && f->code == 0x80 && !op->filters.empty()) {
      std::string all;
      for (const auto& filter : op->filters) all += (all.empty() ? "" : ", ") + filter;
      op->impl->finish(op, core::permissionDenied("the broker refused the subscription to " + all));
      return;
    }
    op->impl->finish(
        op, core::unavailable(describe(op->filters.empty() ? "publish" : "subscribe",
                                       f ? f->code : MQTTASYNC_FAILURE, f ? f->message : nullptr)));
  }

  ConnectOptions opts_;
  Callbacks cb_;
  // Held while a callback runs, closing_ under it. Recursive: a callback may call publish() or
  // subscribe(), whose immediate failure finishes the operation on the same thread.
  std::recursive_mutex cbMu_;
  bool closing_ = false;
  std::mutex opsMu_;
  std::map<Op*, std::unique_ptr<Op>> ops_;
  std::mutex discMu_;  // a disconnect's outcome
  std::condition_variable discCv_;
  bool discDone_ = false;
};

Client::Client(ConnectOptions options, Callbacks callbacks)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(callbacks))) {}

Client::~Client() = default;

core::Status Client::connect() {
  OUTPOST_RETURN_IF_ERROR(impl_->create());
  return impl_->connect();
}

void Client::subscribe(const std::vector<std::string>& filters,
                       std::function<void(core::Status)> done) {
  if (!impl_->handle_) {
    if (done) done(core::failedPrecondition("subscribe before connect"));
    return;
  }
  impl_->subscribe(filters, std::move(done));
}

void Client::unsubscribe(const std::vector<std::string>& filters,
                         std::function<void(core::Status)> done) {
  if (!impl_->handle_) {
    if (done) done(core::failedPrecondition("unsubscribe before connect"));
    return;
  }
  impl_->unsubscribe(filters, std::move(done));
}

void Client::publish(const std::string& topic, std::string payload, bool retained,
                     std::function<void(core::Status)> done) {
  if (!impl_->handle_) {
    if (done) done(core::failedPrecondition("publish before connect"));
    return;
  }
  impl_->publish(topic, std::move(payload), retained, std::move(done));
}

void Client::disconnect(std::chrono::milliseconds timeout) { impl_->disconnect(timeout); }

bool Client::connected() const { return impl_->connected(); }

}  // namespace outpost::mqttc
