#include "outpost/core/event_loop.h"

#include <pthread.h>

#include <future>
#include <memory>

#include "outpost/core/check.h"

namespace outpost::core {

EventLoop::EventLoop(std::string name, Clock& clock) : name_(std::move(name)), clock_(clock) {
  clockWatch_ = clock_.watch([this] {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  });
}

EventLoop::~EventLoop() {
  stop();
  clock_.unwatch(clockWatch_);
}

void EventLoop::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { run(); });
  threadId_ = thread_.get_id();
}

void EventLoop::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

void EventLoop::post(Task task) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  const bool wasEmpty = tasks_.empty();
  tasks_.push_back(std::move(task));
  if (wasEmpty) cv_.notify_one();  // the loop only sleeps while its queue is empty
}

TimerId EventLoop::runAfter(Duration delay, Task task) {
  std::lock_guard lock(mu_);
  TimerId id = nextTimer_++;
  if (stopping_) return id;
  timers_.emplace(clock_.now() + delay, Timer{id, Duration::zero(), std::move(task)});
  cv_.notify_one();
  return id;
}

TimerId EventLoop::runEvery(Duration period, Task task) {
  OUTPOST_CHECK(period > Duration::zero(), "runEvery needs a positive period");
  std::lock_guard lock(mu_);
  TimerId id = nextTimer_++;
  if (stopping_) return id;
  timers_.emplace(clock_.now() + period, Timer{id, period, std::move(task)});
  cv_.notify_one();
  return id;
}

void EventLoop::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.id == id) {
      timers_.erase(it);
      return;
    }
  }
}

bool EventLoop::isInLoopThread() const { return std::this_thread::get_id() == threadId_; }

bool EventLoop::runSync(Task task, std::chrono::milliseconds timeout) {
  OUTPOST_CHECK(!isInLoopThread(), "runSync on the loop's own thread would wait for itself");
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  post([task = std::move(task), done] {
    task();
    done->set_value();
  });
  return fut.wait_for(timeout) == std::future_status::ready;
}

void EventLoop::run() {
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
  std::unique_lock lock(mu_);
  while (true) {
    if (!tasks_.empty()) {
      Task task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
      continue;
    }
    if (stopping_) break;
    if (!timers_.empty()) {
      auto first = timers_.begin();
      MonoTime now = clock_.now();
      if (first->first <= now) {
        Timer timer = std::move(first->second);
        timers_.erase(first);
        if (timer.period > Duration::zero()) {
          // Re-arm before running so the task may cancel its own timer.
          timers_.emplace(now + timer.period, Timer{timer.id, timer.period, timer.task});
        }
        lock.unlock();
        timer.task();
        lock.lock();
        continue;
      }
      auto wait = clock_.realWaitFor(first->first);
      if (wait) {
        cv_.wait_for(lock, *wait);
      } else {
        cv_.wait(lock);
      }
      continue;
    }
    cv_.wait(lock);
  }
}

}  // namespace outpost::core
