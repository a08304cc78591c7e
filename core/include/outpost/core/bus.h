#pragma once
// Bus: typed publish/subscribe between modules. Messages are copied; each subscriber runs on its
// own loop.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <vector>

#include "outpost/core/check.h"
#include "outpost/core/event_loop.h"

namespace outpost::core {

// A named topic that carries messages of type T. Declare one per event, as a constant, next to T.
template <typename T>
struct Topic {
  const char* name;
};

// Keeps a subscription alive; destroying it unsubscribes, and no callback starts after that.
class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(std::function<void()> cancel) : cancel_(std::move(cancel)) {}
  Subscription(Subscription&& o) noexcept : cancel_(std::exchange(o.cancel_, nullptr)) {}
  Subscription& operator=(Subscription&& o) noexcept {
    if (this != &o) {
      reset();
      cancel_ = std::exchange(o.cancel_, nullptr);
    }
    return *this;
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription() { reset(); }
  void reset() {
    if (cancel_) std::exchange(cancel_, nullptr)();
  }

 private:
  std::function<void()> cancel_;
};

class Bus {
 public:
  // Calls `handler` on `loop` with a copy of each message published on `topic` from now on.
  template <typename T>
  [[nodiscard]] Subscription subscribe(
      Topic<T> topic, EventLoop& loop,
      std::type_identity_t<std::function<void(const T&)>> handler) {
    auto entry = std::make_shared<Entry>();
    entry->loop = &loop;
    entry->deliver = [handler = std::move(handler)](const void* msg) {
      handler(*static_cast<const T*>(msg));
    };
    std::lock_guard lock(mu_);
    auto& slot = topics_[topic.name];
    if (slot.subscribers.empty() && !slot.type)
      slot.type = std::make_unique<std::type_index>(typeid(T));
    OUTPOST_CHECK(*slot.type == std::type_index(typeid(T)),
                  "one topic name, one message type: ", topic.name);
    slot.subscribers.push_back(entry);
    std::string name = topic.name;
    return Subscription([this, name, entry] {
      entry->alive->store(false);
      std::lock_guard l(mu_);
      auto& subs = topics_[name].subscribers;
      std::erase(subs, entry);
    });
  }

  // Delivers a copy of `msg` to every current subscriber of `topic`, each on its own loop.
  template <typename T>
  void publish(Topic<T> topic, const T& msg) {
    std::vector<std::shared_ptr<Entry>> subs;
    {
      std::lock_guard lock(mu_);
      auto it = topics_.find(topic.name);
      if (it == topics_.end()) return;
      OUTPOST_CHECK(!it->second.type || *it->second.type == std::type_index(typeid(T)),
                    "one topic name, one message type: ", topic.name);
      subs = it->second.subscribers;
    }
    for (auto& s : subs) {
      auto copy = std::make_shared<T>(msg);
      s->loop->post([s, copy] {
        if (s->alive->load()) s->deliver(copy.get());
      });
    }
  }

 private:
  struct Entry {
    EventLoop* loop = nullptr;
    std::function<void(const void*)> deliver;
    std::shared_ptr<std::atomic<bool>> alive = std::make_shared<std::atomic<bool>>(true);
  };
  struct Slot {
    std::unique_ptr<std::type_index> type;
    std::vector<std::shared_ptr<Entry>> subscribers;
  };
  std::mutex mu_;
  std::map<std::string, Slot, std::less<>> topics_;
};

}  // namespace outpost::core
