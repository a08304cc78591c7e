#include "outpost/agent/agent.h"

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "holds_api.h"
#include "hollow_api.h"
#include "modules.h"
#include "outpost/agent/api_server.h"
#include "outpost/core/bus.h"
#include "outpost/core/metrics.h"
#include "outpost/deploy/hollow_runtime.h"
#include "outpost/twin/rules.h"
#include "outpost/validation/validation.h"
#include "process_metrics.h"
#include "stream_module.h"
#include "version.h"

namespace outpost::agent {

namespace {

// The local API as a lifecycle module.
class ApiModule final : public Module {
 public:
  ApiModule(ApiServer& server, const ApiConfig& config) : server_(server), config_(config) {}
  std::string name() const override { return "api"; }
  core::Status start() override {
    ApiServerOptions o;
    o.maxConnections = static_cast<size_t>(config_.maxConnections);
    o.idleTimeout = config_.idleTimeout;
    o.headerTimeout = config_.headerTimeout;
    o.socketGroup = config_.socketGroup;
    return server_.start(config_.socket, config_.metricsAddress, o);
  }
  void stop() override {
    server_.stop();
    if (afterStop_) afterStop_();
  }
  // Runs once the API thread is gone (releases what only it used).
  void afterStop(std::function<void()> f) { afterStop_ = std::move(f); }
  std::string describe() const override {
    std::string d = "unix:" + config_.socket;
    if (auto tcp = server_.tcpAddress(); !tcp.empty()) d += ", http://" + tcp;
    return d;
  }
  bool alive(std::chrono::milliseconds timeout) override { return server_.alive(timeout); }

 private:
  ApiServer& server_;
  const ApiConfig& config_;
  std::function<void()> afterStop_;
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
        routes_("routes", clock),
        api_(logging.get("api"), &metrics_),
        apiModule_(api_, config_.api),
        store_(context()),
        cloud_(context(), store_),
        deploy_(context(), store_, cloud_),
        twin_(context(), store_),
        upgrade_(context(), store_, cloud_, config_.runtime.enabled ? &deploy_ : nullptr),
        stream_(context(), config_.runtime.enabled ? &deploy_ : nullptr),
        started_(clock.now()) {
    routes_.start();
    registerProcessMetrics(metrics_);
    metrics_
        .gauge("outpost_build_info", "Version of the running agent.",
               {{"version", OUTPOST_VERSION}})
        .set(1);
    addRoutes();
    apiModule_.afterStop([this] { apiReader_.reset(); });
    // Start order: the store, then the API (so `outpostctl status` can watch the rest start, and
    // the API stops before the store it reads), then the workloads from the store alone (offline
    // cold boot), and the cloud link last.
    lifecycle_.add(store_);
    lifecycle_.add(apiModule_);
    if (config_.runtime.enabled) lifecycle_.add(deploy_);
    if (config_.device.enabled) lifecycle_.add(twin_);
    lifecycle_.add(cloud_);
    lifecycle_.add(stream_);   // after the link: the same certificate, which the link may renew
    lifecycle_.add(upgrade_);  // last: its health check asks the link and deploy
  }

  Context context() { return Context{config_, logging_, clock_, bus_, metrics_, routes_}; }

  void addRoutes() {
    api_.route("GET", "/healthz", Listener::kBoth, [](const ApiRequest&) {
      return ApiResponse{200, "text/plain; charset=utf-8", "ok\n"};
    });
    api_.route("GET", "/readyz", Listener::kBoth, [this](const ApiRequest&) {
      auto why = notReady();
      if (!why) return ApiResponse{200, "text/plain; charset=utf-8", "ready\n"};
      return ApiResponse{503, "text/plain; charset=utf-8", "not ready: " + *why + "\n"};
    });
    api_.route("GET", "/metrics", Listener::kBoth, [this](const ApiRequest&) {
      return ApiResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render()};
    });
    api_.route("GET", "/v1/status", Listener::kUnix, [this](const ApiRequest&) {
      nlohmann::json j = nlohmann::json::parse(statusJson());
      addStoreStatus(j);
      if (config_.runtime.enabled) {
        if (auto h = holdsJson(deploy_); !h.is_null()) j["holds"] = std::move(h);
      }
      return ApiResponse{200, "application/json", j.dump()};
    });
    api_.route("GET", "/v1/resources", Listener::kUnix,
               [this](const ApiRequest& req) { return resources(req); });
    api_.route("GET", "/v1/pods/runtime", Listener::kUnix,
               [this](const ApiRequest& req) { return podRuntime(req); });
    api_.route("GET", "/v1/twins", Listener::kUnix,
               [this](const ApiRequest& req) { return twins(req); });
    api_.route("GET", "/v1/holds", Listener::kUnix,
               [this](const ApiRequest&) { return getHolds(deploy_); });
    api_.route("POST", "/v1/holds", Listener::kUnix,
               [this](const ApiRequest& req) { return postHold(deploy_, req); });
    api_.route("POST", "/v1/holds/release", Listener::kUnix,
               [this](const ApiRequest& req) { return postRelease(deploy_, req); });
    api_.route("GET", "/v1/hollow/clock", Listener::kUnix,
               [this](const ApiRequest&) { return getHollowClock(deploy_); });
    api_.route("POST", "/v1/hollow/clock", Listener::kUnix,
               [this](const ApiRequest& req) { return postHollowClock(deploy_, req, log_); });
  }

  static std::string rfc3339(core::WallTime t) { return core::formatRfc3339(t, 3); }

  // Where a pod's container logs are and its recent events, from deploy.
  ApiResponse podRuntime(const ApiRequest& req) {
    auto name = req.query.find("name");
    if (name == req.query.end() || name->second.empty())
      return {400, "application/json", R"({"error":"the name parameter is required"})"};
    auto nsIt = req.query.find("namespace");
    std::string ns = nsIt == req.query.end() || nsIt->second.empty() ? "default" : nsIt->second;
    std::string key = ns + "/pod/" + name->second;
    if (!config_.runtime.enabled) {
      return {404, "application/json",
              R"x({"error":"the runtime is disabled on this node (runtime.enabled: false)"})x"};
    }
    auto info = deploy_.podInfo(key);
    if (!info) {
      return {404, "application/json",
              nlohmann::json{{"error", "pod " + key + " is not known to the reconciler"}}.dump()};
    }
    nlohmann::json events = nlohmann::json::array();
    for (const auto& e : info->events) {
      events.push_back({{"type", e.type},
                        {"reason", e.reason},
                        {"container", e.container},
                        {"message", e.message},
                        {"count", e.count},
                        {"firstTimestamp", rfc3339(e.first)},
                        {"lastTimestamp", rfc3339(e.last)}});
    }
    nlohmann::json out = {
        {"key", key}, {"uid", info->uid}, {"logDirectory", info->logDirectory}, {"events", events}};
    return {200, "application/json", out.dump()};
  }

  // Devices and their twins as the store holds them (the twin service writes there first).
  ApiResponse twins(const ApiRequest& req) {
    auto* reader = apiReader();
    if (!reader) return {503, "application/json", R"({"error":"the store is not open"})"};
    auto devices = reader->devices();
    if (!devices.isOk()) {
      return {500, "application/json",
              nlohmann::json{{"error", devices.status().toString()}}.dump()};
    }
    auto only = req.query.find("device");
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : *devices) {
      if (only != req.query.end() && !only->second.empty() && d.id != only->second) continue;
      auto props = reader->twin(d.id);
      if (!props.isOk()) {
        return {500, "application/json",
                nlohmann::json{{"error", props.status().toString()}}.dump()};
      }
      nlohmann::json properties = nlohmann::json::array();
      for (const auto& p : *props) {
        if (p.type == twin::kDeletedType) continue;
        auto value = [](const std::optional<metadb::TwinValue>& v) {
          if (!v) return nlohmann::json(nullptr);
          return nlohmann::json{
              {"value", v->value},
              {"timestamp", v->timestampMs},
              {"updated", rfc3339(core::WallTime(std::chrono::milliseconds(v->timestampMs)))}};
        };
        properties.push_back({{"name", p.name},
                              {"type", p.type},
                              {"optional", p.optional},
                              {"expected", value(p.expected)},
                              {"actual", value(p.actual)}});
      }
      out.push_back({{"device", d.id},
                     {"name", d.name},
                     {"model", d.model},
                     {"state", d.state},
                     {"lastOnline", d.lastOnline},
                     {"properties", properties}});
    }
    return {200, "application/json", out.dump()};
  }

  // The API thread's own read-only view of the store (opened on first use; the API stops before the
  // store).
  metadb::StoreReader* apiReader() {
    if (!apiReader_ && store_.store()) {
      auto r = store_.store()->openReader();
      if (r.isOk()) apiReader_ = std::move(r).value();
    }
    return apiReader_.get();
  }

  ApiResponse resources(const ApiRequest& req) {
    auto* reader = apiReader();
    if (!reader) return {503, "application/json", R"({"error":"the store is not open"})"};
    auto type = req.query.find("type");
    if (type == req.query.end() || type->second.empty()) {
      return {400, "application/json",
              R"x({"error":"the type parameter is required (pod, configmap, secret, device)"})x"};
    }
    std::optional<std::string_view> ns;
    if (auto it = req.query.find("namespace"); it != req.query.end() && !it->second.empty())
      ns = it->second;
    auto list = reader->list(type->second, ns);
    if (!list.isOk())
      return {500, "application/json", nlohmann::json{{"error", list.status().toString()}}.dump()};
    auto name = req.query.find("name");
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : *list) {
      if (name != req.query.end() && !name->second.empty() && r.name != name->second) continue;
      nlohmann::json item = {{"key", r.key},       {"namespace", r.ns},
                             {"type", r.type},     {"name", r.name},
                             {"uid", r.uid},       {"resourceVersion", std::to_string(r.version)},
                             {"origin", r.origin}, {"updated", core::toUnixMillis(r.updated)}};
      // An object stored by an older agent may nest deeper than any reader can print (the door
      // refuses such objects now): listed with the reason instead of its content.
      if (core::Status within = validation::jsonWithin(r.object); !within.isOk()) {
        item["object"] = nullptr;
        item["error"] = "the stored object is not shown: " + within.message();
        out.push_back(std::move(item));
        continue;
      }
      nlohmann::json object = nlohmann::json::parse(r.object, nullptr, false);
      if (r.type == "secret") hideSecretValues(object);
      if (r.type == "pod") {
        if (auto st = deploy_.podStatus(r.key); st && validation::jsonWithin(*st).isOk()) {
          nlohmann::json status = nlohmann::json::parse(*st, nullptr, false);
          if (!status.is_discarded()) object["status"] = status;
        }
      }
      item["object"] = std::move(object);
      out.push_back(std::move(item));
    }
    return {200, "application/json", out.dump()};
  }

  // The store's file size and outbox, read on the API thread.
  void addStoreStatus(nlohmann::json& j) {
    std::error_code ec;
    auto size = std::filesystem::file_size(store_.path(), ec);
    auto wal = std::filesystem::file_size(store_.path() + "-wal", ec);
    nlohmann::json st = {{"path", store_.path()}, {"size_bytes", ec ? size : size + wal}};
    if (auto* reader = apiReader()) {
      if (auto stats = reader->outboxStats(); stats.isOk()) {
        st["outbox"] = {
            {"rows", stats->rows}, {"bytes", stats->bytes}, {"dropped", stats->dropped}};
      }
    }
    j["store"] = st;
  }

  // Secret values never leave the agent through its API: only their sizes do (of the decoded
  // value for base64 `data`).
  static void hideSecretValues(nlohmann::json& secret) {
    for (const char* field : {"data", "stringData"}) {
      auto it = secret.find(field);
      if (it == secret.end() || !it->is_object()) continue;
      bool base64 = std::string_view(field) == "data";
      for (auto& [k, v] : it->items()) {
        size_t n = v.is_string() ? v.get<std::string>().size() : v.dump().size();
        if (base64 && v.is_string()) {
          const std::string& text = v.get_ref<const std::string&>();
          size_t pad = 0;
          while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
          n = text.size() / 4 * 3 - std::min(pad, text.size() / 4 * 3);
        }
        v = "(hidden, " + std::to_string(n) + " bytes)";
      }
    }
  }

  // Why the agent is not ready, or nothing when it is: still starting, or its store's file went.
  std::optional<std::string> notReady() const {
    if (!lifecycle_.ready()) return std::string("starting");
    return store_.vanished();
  }

  std::string statusJson() const {
    nlohmann::json j;
    j["version"] = OUTPOST_VERSION;
    j["node"] = config_.node.name;
    j["pid"] = getpid();
    j["uptime_seconds"] = std::chrono::duration<double>(clock_.now() - started_).count();
    auto why = notReady();
    j["ready"] = !why.has_value();
    if (why) j["not_ready_reason"] = *why;
    j["log_level"] = std::string(core::logLevelName(logging_.level()));
    j["api"] = {{"socket", config_.api.socket}, {"metrics_address", api_.tcpAddress()}};
    // A hollow node is never taken for a real one (docs/hollow-nodes.md).
    j["hollow"] = config_.runtime.enabled && deploy::isHollowEndpoint(config_.runtime.endpoint);
    if (auto* link = cloud_.link()) {
      auto s = link->status();
      nlohmann::json c = {{"transport", config_.cloud.transport},
                          {"state", std::string(cloudhub::linkStateName(s.state))},
                          {"endpoint", s.endpoint},
                          {"last_error", s.lastError},
                          {"reconnects", s.reconnects},
                          {"offline_seconds", s.offlineSeconds},
                          {"messages_in", s.messagesIn},
                          {"messages_out", s.messagesOut},
                          {"messages_invalid", s.messagesInvalid},
                          {"rows_refused", s.rowsRefused},
                          {"row_refused", s.rowRefused}};
      c["last_sync"] =
          s.lastSync ? nlohmann::json(core::toUnixMillis(*s.lastSync)) : nlohmann::json(nullptr);
      if (auto cert = cloud_.certificateState()) {
        auto ms = [](const std::optional<core::WallTime>& t) {
          return t ? nlohmann::json(core::toUnixMillis(*t)) : nlohmann::json(nullptr);
        };
        c["certificate"] = {{"subject", cert->subject},
                            {"serial", cert->serial},
                            {"not_after", ms(cert->notAfter)},
                            {"next_rotation", ms(cert->nextRotation)},
                            {"last_rotation", ms(cert->lastRotation)},
                            {"rotations", cert->rotations},
                            {"failures", cert->failures},
                            {"last_error", cert->lastError}};
      }
      j["cloud"] = c;
    }
    if (auto t = stream_.status()) {
      j["stream"] = {{"server", config_.cloud.websocket.streamServer},
                     {"connected", t->connected},
                     {"last_error", t->lastError},
                     {"sessions", t->sessions},
                     {"connects", t->connects}};
    }
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
  core::EventLoop routes_;  // Context::routes; outlives the modules, whose subscriptions use it
  ApiServer api_;
  ApiModule apiModule_;
  StoreModule store_;
  CloudModule cloud_;
  DeployModule deploy_;
  TwinModule twin_;
  UpgradeModule upgrade_;
  StreamModule stream_;
  metadb::StoreReaderPtr apiReader_;  // used on the API thread only
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

std::optional<std::string> Agent::notReady() const { return impl_->notReady(); }

void Agent::reload(const Config& config) {
  if (auto level = core::parseLogLevel(config.log.level)) {
    impl_->logging_.setLevel(*level);
    impl_->config_.log.level = config.log.level;
    impl_->log_.info("log level is now ", config.log.level);
  }
}

}  // namespace outpost::agent
