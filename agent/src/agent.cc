#include "outpost/agent/agent.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "outpost/agent/api_server.h"
#include "outpost/core/bus.h"
#include "outpost/core/metrics.h"
#include "process_metrics.h"
#include "version.h"

namespace outpost::agent {

namespace {

// The local API as a lifecycle module.
class ApiModule final : public Module {
 public:
  ApiModule(ApiServer& server, const ApiConfig& config) : server_(server), config_(config) {}
  std::string name() const override { return "api"; }
  core::Status start() override { return server_.start(config_.socket, config_.metricsAddress); }
  void stop() override { server_.stop(); }
  std::string describe() const override {
    std::string d = "unix:" + config_.socket;
    if (auto tcp = server_.tcpAddress(); !tcp.empty()) d += ", http://" + tcp;
    return d;
  }
  bool alive(std::chrono::milliseconds timeout) override { return server_.alive(timeout); }

 private:
  ApiServer& server_;
  const ApiConfig& config_;
};

}  // namespace

class Agent::Impl {
 public:
  Impl(Config config, core::Logging& logging, core::Clock& clock)
      : config_(std::move(config)),
        logging_(logging),
        clock_(clock),
        log_(logging.get("agent")),
        lifecycle_(log_),
        api_(logging.get("api")),
        apiModule_(api_, config_.api),
        started_(clock.now()) {
    registerProcessMetrics(metrics_);
    metrics_
        .gauge("outpost_build_info", "Version of the running agent.",
               {{"version", OUTPOST_VERSION}})
        .set(1);
    addRoutes();
    // Start order: the API first, so that `outpostctl status` can watch the others start.
    lifecycle_.add(apiModule_);
  }

  void addRoutes() {
    api_.route("GET", "/healthz", Listener::kBoth, [](const ApiRequest&) {
      return ApiResponse{200, "text/plain; charset=utf-8", "ok\n"};
    });
    api_.route("GET", "/readyz", Listener::kBoth, [this](const ApiRequest&) {
      if (lifecycle_.ready()) return ApiResponse{200, "text/plain; charset=utf-8", "ready\n"};
      return ApiResponse{503, "text/plain; charset=utf-8", "not ready: starting\n"};
    });
    api_.route("GET", "/metrics", Listener::kBoth, [this](const ApiRequest&) {
      return ApiResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render()};
    });
    api_.route("GET", "/v1/status", Listener::kUnix, [this](const ApiRequest&) {
      return ApiResponse{200, "application/json", statusJson()};
    });
  }

  std::string statusJson() const {
    nlohmann::json j;
    j["version"] = OUTPOST_VERSION;
    j["node"] = config_.node.name;
    j["pid"] = getpid();
    j["uptime_seconds"] = std::chrono::duration<double>(clock_.now() - started_).count();
    j["ready"] = lifecycle_.ready();
    j["log_level"] = std::string(core::logLevelName(logging_.level()));
    j["api"] = {{"socket", config_.api.socket}, {"metrics_address", api_.tcpAddress()}};
    auto& mods = j["modules"] = nlohmann::json::array();
    for (const auto& m : lifecycle_.status()) {
      mods.push_back({{"name", m.name}, {"state", moduleStateName(m.state)}, {"detail", m.detail}});
    }
    return j.dump();
  }

  Config config_;
  core::Logging& logging_;
  core::Clock& clock_;
  core::Logger log_;
  core::MetricsRegistry metrics_;
  core::Bus bus_;
  Lifecycle lifecycle_;
  ApiServer api_;
  ApiModule apiModule_;
  core::MonoTime started_;
};

Agent::Agent(Config config, core::Logging& logging, core::Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(config), logging, clock)) {}

Agent::~Agent() = default;

core::Status Agent::start(std::function<void(const std::string&)> progress) {
  if (progress) impl_->lifecycle_.onProgress(std::move(progress));
  return impl_->lifecycle_.startAll();
}

bool Agent::stop(std::chrono::milliseconds deadline) { return impl_->lifecycle_.stopAll(deadline); }

bool Agent::alive(std::chrono::milliseconds timeout) { return impl_->lifecycle_.alive(timeout); }

std::string Agent::statusJson() const { return impl_->statusJson(); }

void Agent::reload(const Config& config) {
  if (auto level = core::parseLogLevel(config.log.level)) {
    impl_->logging_.setLevel(*level);
    impl_->config_.log.level = config.log.level;
    impl_->log_.info("log level is now ", config.log.level);
  }
}

}  // namespace outpost::agent
