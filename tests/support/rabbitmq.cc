#include "support/rabbitmq.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>

#include "support/mosquitto.h"  // freePort()

namespace outpost::test {

namespace {

constexpr const char* kServer = "/usr/lib/rabbitmq/bin/rabbitmq-server";
constexpr const char* kEpmd = "/usr/bin/epmd";

bool canConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

int readPid(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return -1;
  int pid = std::atoi(readFile(file).c_str());
  return pid > 1 ? pid : -1;
}

}  // namespace

std::string RabbitMq::unavailableReason() {
  if (access(kServer, X_OK) != 0)
    return std::string(kServer) + " is not installed (rabbitmq-server)";
  if (access(kEpmd, X_OK) != 0) return std::string(kEpmd) + " is not installed (erlang-base)";
  return "";
}

RabbitMq* RabbitMq::shared(std::string& why) {
  static std::string reason = unavailableReason();
  static std::unique_ptr<RabbitMq> broker = [] {
    std::unique_ptr<RabbitMq> b;
    if (!reason.empty()) return b;
    try {
      b = std::make_unique<RabbitMq>();
    } catch (const std::exception& e) {
      reason = e.what();
    }
    return b;
  }();
  why = reason;
  return broker.get();
}

RabbitMq::RabbitMq() {
  static std::atomic<int> instances{0};
  node_ =
      "outpost-test-" + std::to_string(getpid()) + "-" + std::to_string(instances++) + "@localhost";
  writeFile(dir_ / "enabled_plugins", "[rabbitmq_mqtt].\n");
  writeFile(dir_ / "rabbitmq-env.conf", "");
  startWatcher();
  for (int attempt = 0; attempt < 3 && !child_; ++attempt) {
    mqttPort_ = freePort();
    distPort_ = freePort();
    epmdPort_ = freePort();
    // No AMQP listener; MQTT on loopback, anonymous clients as guest (allowed on loopback only).
    writeFile(dir_ / "rabbitmq.conf",
              "listeners.tcp = none\n"
              "mqtt.listeners.tcp.default = 127.0.0.1:" +
                  std::to_string(mqttPort_) +
                  "\n"
                  "mqtt.allow_anonymous = true\n"
                  "log.console = false\n"
                  "log.file.level = info\n");
    start();
  }
  if (!child_) throw std::runtime_error("RabbitMQ did not start; its log:\n" + log());
}

void RabbitMq::startWatcher() {
  // A test process that dies without destroying this (a crash, a kill; also while the node starts)
  // must not leave it running: this shell waits for the test process to go, then kills the script
  // and the Erlang node by their pid files, then every process started with this node's name in its
  // environment (a node that had not written its pid file yet), its epmd, and removes the
  // directory.
  const std::string d = dir_.path().string();
  const std::string pid = std::to_string(getpid());
  std::string script;
  script += "while kill -0 " + pid + " 2>/dev/null; do sleep 1; done\n";
  script += "for f in '" + d + "/script.pid' '" + d + "/rabbit.pid'; do\n";
  script += "  [ -f \"$f\" ] && kill -9 \"$(cat \"$f\")\" 2>/dev/null\n";
  script += "done\n";
  script += "for e in /proc/[0-9]*/environ; do\n";
  script += "  p=${e#/proc/}; p=${p%/environ}\n";
  script += "  tr '\\0' '\\n' < \"$e\" 2>/dev/null | grep -qx 'RABBITMQ_NODENAME=" + node_ +
            "' && kill -9 \"$p\" 2>/dev/null\n";
  script += "done\n";
  script += "[ -f '" + d + "/epmd.port' ] && " + kEpmd + " -port \"$(cat '" + d +
            "/epmd.port')\" -kill >/dev/null 2>&1\n";
  script += "rm -rf '" + d + "'\n";
  watcher_ = std::make_unique<Child>(std::vector<std::string>{"/bin/sh", "-c", script});
}

RabbitMq::~RabbitMq() {
  stop();
  watcher_.reset();  // killed: the node is stopped already
}

std::string RabbitMq::uri() const { return "tcp://127.0.0.1:" + std::to_string(mqttPort_); }

std::string RabbitMq::log() const {
  std::error_code ec;
  auto file = dir_ / "log" / (node_ + ".log");
  std::string text = std::filesystem::exists(file, ec) ? readFile(file) : "(no log file)";
  if (child_) text += child_->err();
  return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
}

void RabbitMq::start() {
  if (child_) return;
  const std::string d = dir_.path().string();
  std::vector<std::string> env = {
      "HOME=" + d,  // the Erlang cookie is made here
      "RABBITMQ_NODENAME=" + node_,
      "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
      "RABBITMQ_DIST_PORT=" + std::to_string(distPort_),
      "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
      "ERL_EPMD_ADDRESS=127.0.0.1",
      "ERL_EPMD_PORT=" + std::to_string(epmdPort_),
      "RABBITMQ_MNESIA_BASE=" + d + "/mnesia",
      "RABBITMQ_LOG_BASE=" + d + "/log",
      "RABBITMQ_CONFIG_FILE=" + d + "/rabbitmq.conf",
      "RABBITMQ_CONF_ENV_FILE=" + d + "/rabbitmq-env.conf",
      "RABBITMQ_ENABLED_PLUGINS_FILE=" + d + "/enabled_plugins",
      "RABBITMQ_PID_FILE=" + d + "/rabbit.pid",
  };
  writeFile(dir_ / "epmd.port", std::to_string(epmdPort_));
  auto child = std::make_unique<Child>(std::vector<std::string>{kServer}, env);
  writeFile(dir_ / "script.pid", std::to_string(child->pid()));
  // Erlang and the plugin take several seconds, more on a loaded machine.
  bool up = waitFor([&] { return canConnect(mqttPort_) || !child->running(); },
                    std::chrono::seconds(120));
  if (up && child->running()) {
    child_ = std::move(child);
    return;
  }
  child->signal(SIGKILL);
  if (int pid = readPid(dir_ / "rabbit.pid"); pid > 0) kill(pid, SIGKILL);
  run({kEpmd, "-port", std::to_string(epmdPort_), "-kill"});
}

void RabbitMq::stop() {
  if (!child_) return;
  int pid = readPid(dir_ / "rabbit.pid");
  // The Erlang node stops cleanly on SIGTERM; the script that started it then exits.
  if (pid > 0) kill(pid, SIGTERM);
  if (child_->wait(std::chrono::seconds(60)) < 0) {
    if (pid > 0) kill(pid, SIGKILL);
    child_->signal(SIGKILL);
    child_->wait(std::chrono::seconds(10));
  }
  std::error_code ec;
  std::filesystem::remove(dir_ / "rabbit.pid", ec);
  run({kEpmd, "-port", std::to_string(epmdPort_), "-kill"});
  child_.reset();
}

}  // namespace outpost::test
