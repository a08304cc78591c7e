#pragma once
// EventLoop: one thread that runs posted tasks and timers in order; every module owns one.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "outpost/core/clock.h"

namespace outpost::core {

using TimerId = uint64_t;

class EventLoop {
 public:
  using Task = std::function<void()>;

  // `name` names the thread (visible in top/ps, at most 15 characters kept).
  EventLoop(std::string name, Clock& clock);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Starts the thread. Tasks posted before start() run once it starts.
  void start();
  // Runs what is already queued, then joins the thread. Tasks posted later are dropped. Idempotent.
  void stop();

  // Queues a task; callable from any thread. Tasks run in the order they were posted.
  void post(Task task);
  // Runs `task` once, `delay` after now on the loop's clock. Callable from any thread.
  TimerId runAfter(Duration delay, Task task);
  // Runs `task` every `period` (first run one period from now) until cancelled.
  TimerId runEvery(Duration period, Task task);
  // Cancels a timer; a timer that already fired or was cancelled is ignored.
  void cancel(TimerId id);

  // True when called from this loop's own thread.
  bool isInLoopThread() const;
  // Posts `task` and waits until it ran; false if the loop did not run it within `timeout` of real
  // time. Never call it from the loop's own thread.
  bool runSync(Task task, std::chrono::milliseconds timeout = std::chrono::seconds(5));

  Clock& clock() const { return clock_; }
  const std::string& name() const { return name_; }

 private:
  struct Timer {
    TimerId id;
    Duration period;  // zero for one-shot
    Task task;
  };
  void run();

  const std::string name_;
  Clock& clock_;
  int clockWatch_ = 0;
  std::thread thread_;
  std::thread::id threadId_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  std::multimap<MonoTime, Timer> timers_;
  TimerId nextTimer_ = 1;
  bool started_ = false;
  bool stopping_ = false;
};

}  // namespace outpost::core
