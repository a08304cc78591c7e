#pragma once
// A real RabbitMQ with its MQTT plugin for tests (Debian's rabbitmq-server): its own node name,
// data, logs, configuration, plugins file and Erlang cookie under a temporary dir; MQTT, the Erlang
// distribution port and its own epmd on loopback ports the system picked free; no AMQP listener.
// Stopped (with its epmd) and removed when destroyed; a watcher process stops it too when the test
// process dies without destroying it (a crash). Starting takes several seconds (Erlang), so a
// test binary shares one (shared()).

#include <memory>
#include <string>

#include "support/test_util.h"

namespace outpost::test {

class RabbitMq {
 public:
  // Starts and waits until MQTT accepts connections; throws std::runtime_error with the tail of
  // its log when it does not come up.
  RabbitMq();
  ~RabbitMq();
  RabbitMq(const RabbitMq&) = delete;
  RabbitMq& operator=(const RabbitMq&) = delete;

  int port() const { return mqttPort_; }
  std::string uri() const;  // tcp://127.0.0.1:<port>
  void stop();              // SIGTERM to the node and wait; what it persisted stays on disk
  void start();             // again, on the same ports, with what it persisted
  bool running() const { return child_ != nullptr; }
  std::string log() const;  // its log file so far

  // Why RabbitMQ cannot run here (not installed), or empty.
  static std::string unavailableReason();
  // One broker for the whole test binary, started on first use; nullptr, with `why` set, when it
  // is not installed or did not start.
  static RabbitMq* shared(std::string& why);

 private:
  void startWatcher();

  TempDir dir_;
  std::string node_;
  int mqttPort_ = 0;
  int distPort_ = 0;
  int epmdPort_ = 0;
  std::unique_ptr<Child> child_;
  std::unique_ptr<Child> watcher_;
};

}  // namespace outpost::test
