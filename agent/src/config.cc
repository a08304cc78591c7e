#include "outpost/agent/config.h"

#include <arpa/inet.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <regex>
#include <sstream>

#include "config_checks.h"
#include "outpost/core/log.h"
#include "outpost/deploy/hollow_runtime.h"
#include "outpost/deploy/maintenance.h"
#include "outpost/deploy/reconciler.h"
#include "outpost/validation/validation.h"

extern char** environ;

namespace outpost::agent {

namespace {

using Error = std::optional<std::string>;  // a message, or nothing when the value was taken

// How one key is read from YAML and from an environment string.
struct Field {
  std::string path;
  std::function<Error(const YAML::Node&)> fromYaml;
  std::function<Error(const std::string&)> fromText;
};

std::string trim(std::string s) {
  auto notSpace = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), notSpace));
  s.erase(std::find_if(s.rbegin(), s.rend(), notSpace).base(), s.end());
  return s;
}

Error scalarText(const YAML::Node& n, std::string& out) {
  if (!n.IsScalar()) return "must be a single value, not a list or a map";
  out = n.Scalar();
  return std::nullopt;
}

Error parseDuration(const std::string& text, Seconds& out) {
  std::string t = trim(text);
  if (t.empty()) return "must be a duration such as 500ms, 15s, 2m or 1h";
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  std::string number = t.substr(0, i), unit = trim(t.substr(i));
  double value = 0;
  auto res = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || res.ec != std::errc() || res.ptr != number.data() + number.size()) {
    return "must be a duration such as 500ms, 15s, 2m or 1h, got \"" + text + "\"";
  }
  double ms;
  if (unit == "ms")
    ms = value;
  else if (unit.empty() || unit == "s")
    ms = value * 1000;
  else if (unit == "m")
    ms = value * 60'000;
  else if (unit == "h")
    ms = value * 3'600'000;
  else
    return "unknown unit \"" + unit + "\" (use ms, s, m or h)";
  // Ten years is more than any setting needs, and keeps the conversion to an integer defined.
  constexpr double kMaxMs = 10.0 * 365 * 24 * 3'600'000;
  if (!(ms <= kMaxMs)) return "must be at most 87600h, got \"" + text + "\"";
  out = Seconds(static_cast<int64_t>(ms));
  return std::nullopt;
}

template <typename T>
Error parseNumber(const std::string& text, T& out) {
  std::string t = trim(text);
  auto res = std::from_chars(t.data(), t.data() + t.size(), out);
  if (t.empty() || res.ec != std::errc() || res.ptr != t.data() + t.size()) {
    return "must be a number, got \"" + text + "\"";
  }
  return std::nullopt;
}

Error parseBool(const std::string& text, bool& out) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "true" || t == "yes" || t == "on" || t == "1")
    out = true;
  else if (t == "false" || t == "no" || t == "off" || t == "0")
    out = false;
  else
    return "must be true or false, got \"" + text + "\"";
  return std::nullopt;
}

// Binds a key to a member through a text parser; YAML scalars go through the same parser.
template <typename T>
Field textField(std::string path, T& target, std::function<Error(const std::string&, T&)> parse) {
  Field f;
  f.path = std::move(path);
  f.fromText = [&target, parse](const std::string& text) { return parse(text, target); };
  f.fromYaml = [&target, parse](const YAML::Node& n) -> Error {
    std::string text;
    if (auto e = scalarText(n, text)) return e;
    return parse(text, target);
  };
  return f;
}

Field stringField(std::string path, std::string& target) {
  return textField<std::string>(std::move(path), target,
                                [](const std::string& t, std::string& out) {
                                  out = t;
                                  return Error();
                                });
}
Field durationField(std::string path, Seconds& target) {
  return textField<Seconds>(std::move(path), target, parseDuration);
}
Field intField(std::string path, int64_t& target) {
  return textField<int64_t>(std::move(path), target, parseNumber<int64_t>);
}
Field smallIntField(std::string path, int& target) {
  return textField<int>(std::move(path), target, parseNumber<int>);
}
Field doubleField(std::string path, double& target) {
  return textField<double>(std::move(path), target, parseNumber<double>);
}
Field boolField(std::string path, bool& target) {
  return textField<bool>(std::move(path), target, parseBool);
}

// A list: YAML sequence of scalars, or in the environment a comma-separated string.
// In the environment the items are separated by `separator`.
Field listField(std::string path, std::vector<std::string>& target, char separator = ',') {
  Field f;
  f.path = std::move(path);
  f.fromText = [&target, separator](const std::string& text) -> Error {
    target.clear();
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, separator)) {
      item = trim(item);
      if (!item.empty()) target.push_back(item);
    }
    return std::nullopt;
  };
  f.fromYaml = [&target](const YAML::Node& n) -> Error {
    if (n.IsNull()) {
      target.clear();
      return std::nullopt;
    }
    if (!n.IsSequence()) return "must be a list";
    target.clear();
    for (const auto& item : n) {
      if (!item.IsScalar()) return "must be a list of single values";
      target.push_back(item.Scalar());
    }
    return std::nullopt;
  };
  return f;
}

// A map of strings: YAML mapping, or in the environment "k1=v1,k2=v2".
Field mapField(std::string path, std::map<std::string, std::string>& target) {
  Field f;
  f.path = std::move(path);
  f.fromText = [&target](const std::string& text) -> Error {
    target.clear();
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
      item = trim(item);
      if (item.empty()) continue;
      auto eq = item.find('=');
      if (eq == std::string::npos) return "must be key=value pairs separated by commas";
      target[trim(item.substr(0, eq))] = trim(item.substr(eq + 1));
    }
    return std::nullopt;
  };
  f.fromYaml = [&target](const YAML::Node& n) -> Error {
    if (n.IsNull()) {
      target.clear();
      return std::nullopt;
    }
    if (!n.IsMap()) return "must be a map of names to values";
    target.clear();
    for (const auto& kv : n) {
      if (!kv.second.IsScalar())
        return "value of \"" + kv.first.Scalar() + "\" must be a single value";
      target[kv.first.Scalar()] = kv.second.Scalar();
    }
    return std::nullopt;
  };
  return f;
}

// Every key of the configuration, in the order the documentation lists them.
std::vector<Field> schema(Config& c) {
  return {
      stringField("node.name", c.node.name),
      mapField("node.labels", c.node.labels),
      listField("node.groups", c.node.groups),
      stringField("node.state_dir", c.node.stateDir),
      listField("node.host_path_allow", c.node.hostPathAllow),
      // A window has commas of its own ("Mon,Wed 01:00-03:00").
      listField("node.maintenance_windows", c.node.maintenanceWindows, ';'),
      stringField("node.address", c.node.address),
      mapField("node.reserved", c.node.reserved),
      stringField("log.level", c.log.level),
      stringField("cloud.transport", c.cloud.transport),
      durationField("cloud.heartbeat", c.cloud.heartbeat),
      doubleField("cloud.rate_limit.qps", c.cloud.rateLimitQps),
      smallIntField("cloud.rate_limit.burst", c.cloud.rateLimitBurst),
      durationField("cloud.reconnect.base", c.cloud.reconnectBase),
      durationField("cloud.reconnect.cap", c.cloud.reconnectCap),
      intField("cloud.max_message_bytes", c.cloud.maxMessageBytes),
      stringField("cloud.tls.ca", c.cloud.tls.ca),
      stringField("cloud.tls.cert", c.cloud.tls.cert),
      stringField("cloud.tls.key", c.cloud.tls.key),
      stringField("cloud.mqtt.broker", c.cloud.mqtt.broker),
      stringField("cloud.mqtt.prefix", c.cloud.mqtt.prefix),
      stringField("cloud.mqtt.encoding", c.cloud.mqtt.encoding),
      stringField("cloud.mqtt.username", c.cloud.mqtt.username),
      stringField("cloud.mqtt.password_file", c.cloud.mqtt.passwordFile),
      stringField("cloud.websocket.server", c.cloud.websocket.server),
      stringField("cloud.websocket.project_id", c.cloud.websocket.projectId),
      stringField("cloud.websocket.node_namespace", c.cloud.websocket.nodeNamespace),
      stringField("cloud.websocket.cert_server", c.cloud.websocket.certServer),
      stringField("cloud.websocket.token_file", c.cloud.websocket.tokenFile),
      stringField("cloud.websocket.stream_server", c.cloud.websocket.streamServer),
      intField("store.outbox_max_rows", c.store.outboxMaxRows),
      intField("store.outbox_max_bytes", c.store.outboxMaxBytes),
      durationField("store.commit_window", c.store.commitWindow),
      boolField("runtime.enabled", c.runtime.enabled),
      stringField("runtime.endpoint", c.runtime.endpoint),
      stringField("runtime.namespace", c.runtime.ns),
      stringField("runtime.sandbox_image", c.runtime.sandboxImage),
      stringField("runtime.cgroup_parent", c.runtime.cgroupParent),
      durationField("runtime.request_timeout", c.runtime.requestTimeout),
      durationField("runtime.resync_interval", c.runtime.resyncInterval),
      durationField("runtime.node_status_interval", c.runtime.nodeStatusInterval),
      boolField("device.enabled", c.device.enabled),
      stringField("device.broker", c.device.broker),
      stringField("device.username", c.device.username),
      stringField("device.password_file", c.device.passwordFile),
      stringField("device.tls.ca", c.device.tls.ca),
      stringField("device.tls.cert", c.device.tls.cert),
      stringField("device.tls.key", c.device.tls.key),
      stringField("device.device_id_form", c.device.deviceIdForm),
      // Twin limits.
      intField("device.max_devices", c.device.maxDevices),
      intField("device.max_properties_per_device", c.device.maxPropertiesPerDevice),
      intField("device.max_value_bytes", c.device.maxValueBytes),
      stringField("api.socket", c.api.socket),
      stringField("api.metrics_address", c.api.metricsAddress),
      stringField("api.socket_group", c.api.socketGroup),
      intField("api.max_connections", c.api.maxConnections),
      durationField("api.idle_timeout", c.api.idleTimeout),
      durationField("api.header_timeout", c.api.headerTimeout),
      listField("upgrade.trusted_keys", c.upgrade.trustedKeys),
      durationField("upgrade.health_timeout", c.upgrade.healthTimeout),
      intField("upgrade.max_package_bytes", c.upgrade.maxPackageBytes),
      stringField("upgrade.ca", c.upgrade.ca),
      intField("stream.max_sessions", c.stream.maxSessions),
      intField("stream.max_bytes_per_second", c.stream.maxBytesPerSecond),
      durationField("stream.idle_timeout", c.stream.idleTimeout),
  };
}

bool isSectionPrefix(const std::vector<Field>& fields, const std::string& path) {
  std::string prefix = path + ".";
  return std::any_of(fields.begin(), fields.end(),
                     [&](const Field& f) { return f.path.rfind(prefix, 0) == 0; });
}

void walk(const YAML::Node& node, const std::string& path, std::vector<Field>& fields,
          ConfigErrors& errors) {
  for (const auto& kv : node) {
    std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    std::string full = path.empty() ? key : path + "." + key;
    auto it =
        std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.path == full; });
    if (it != fields.end()) {
      if (kv.second.IsNull() && kv.second.Tag() != "!!str") continue;  // "key:" keeps the default
      if (auto e = it->fromYaml(kv.second)) errors.errors.push_back({full, *e});
    } else if (isSectionPrefix(fields, full)) {
      if (kv.second.IsNull()) continue;
      if (!kv.second.IsMap()) {
        errors.errors.push_back({full, "must be a section (a map of keys)"});
        continue;
      }
      walk(kv.second, full, fields, errors);
    } else {
      errors.errors.push_back({full, "unknown key"});
    }
  }
}

bool readable(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

bool hasScheme(const std::string& uri, std::initializer_list<const char*> schemes) {
  return std::any_of(schemes.begin(), schemes.end(),
                     [&](const char* s) { return uri.rfind(s, 0) == 0 && uri.size() > strlen(s); });
}

// `managed`: the agent writes these files itself (KubeEdge bootstrap), so they may not exist yet.
void checkTls(const TlsConfig& tls, const std::string& prefix, ConfigErrors& errs,
              bool managed = false) {
  auto file = [&](const std::string& key, const std::string& path) {
    if (!path.empty() && !managed && !readable(path)) {
      errs.errors.push_back({prefix + "." + key, "cannot read file \"" + path + "\""});
    }
  };
  file("ca", tls.ca);
  file("cert", tls.cert);
  file("key", tls.key);
  if (tls.cert.empty() != tls.key.empty()) {
    errs.errors.push_back(
        {prefix + (tls.cert.empty() ? ".cert" : ".key"), "cert and key must be given together"});
  }
}

// KubeEdge with a certificate service: the agent fetches and rotates the client certificate.
bool certificatesManaged(const Config& c) {
  return c.cloud.transport == "websocket" && !c.cloud.websocket.certServer.empty();
}

// Where managed certificates go when cloud.tls leaves a path empty: <state_dir>/certs/.
void defaultManagedCertificates(Config& c) {
  if (!certificatesManaged(c)) return;
  std::string dir = c.node.stateDir + "/certs/";
  if (c.cloud.tls.ca.empty()) c.cloud.tls.ca = dir + "ca.crt";
  if (c.cloud.tls.cert.empty()) c.cloud.tls.cert = dir + "edge.crt";
  if (c.cloud.tls.key.empty()) c.cloud.tls.key = dir + "edge.key";
}

// The MQTT keepalive is 16 bits of seconds; a longer heartbeat would wrap.
constexpr Seconds kMaxHeartbeat = std::chrono::seconds(65535);

void validate(const Config& c, ConfigErrors& errs) {
  auto add = [&](std::string path, std::string msg) { errs.errors.push_back({path, msg}); };
  static const std::regex kDnsName("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$");
  if (c.node.name.empty())
    add("node.name", "is required (the node's name in the cloud)");
  else if (!std::regex_match(c.node.name, kDnsName))
    add("node.name",
        "must be a lowercase DNS name (a-z, 0-9, '-', '.'), got \"" + c.node.name + "\"");
  for (const auto& g : c.node.groups) {
    if (!std::regex_match(g, kDnsName))
      add("node.groups", "\"" + g + "\" is not a lowercase DNS name");
  }
  if (c.node.stateDir.empty() || c.node.stateDir[0] != '/')
    add("node.state_dir", "must be an absolute path");
  for (const auto& p : c.node.hostPathAllow) {
    if (!validation::absolutePath("node.host_path_allow", p).isOk())
      add("node.host_path_allow",
          "\"" + validation::printable(p) + "\" is not an absolute path without '..'");
  }
  for (size_t i = 0; i < c.node.maintenanceWindows.size(); ++i) {
    if (auto w = deploy::parseMaintenanceWindow(c.node.maintenanceWindows[i]); !w.isOk())
      add("node.maintenance_windows[" + std::to_string(i) + "]",
          validation::printable(w.status().message(), 200));
  }
  if (!c.node.address.empty()) {
    in6_addr any{};
    if (inet_pton(AF_INET, c.node.address.c_str(), &any) != 1 &&
        inet_pton(AF_INET6, c.node.address.c_str(), &any) != 1)
      add("node.address",
          "must be an IP address, got \"" + validation::printable(c.node.address) + "\"");
  }
  if (auto r = deploy::parseNodeReserved(c.node.reserved); !r.isOk())
    add("node.reserved", r.status().message());
  if (!core::parseLogLevel(c.log.level))
    add("log.level", "must be one of trace, debug, info, warn, error, critical, off");
  if (c.cloud.transport != "mqtt" && c.cloud.transport != "websocket")
    add("cloud.transport", "must be one of mqtt, websocket");
  if (c.cloud.heartbeat < std::chrono::seconds(1) || c.cloud.heartbeat > kMaxHeartbeat)
    add("cloud.heartbeat", "must be from 1s to 65535s (18h12m15s, the MQTT keepalive's range)");
  if (!(c.cloud.rateLimitQps > 0) || !std::isfinite(c.cloud.rateLimitQps))
    add("cloud.rate_limit.qps", "must be a finite number greater than zero");
  if (c.cloud.rateLimitBurst < 1) add("cloud.rate_limit.burst", "must be at least 1");
  if (c.cloud.reconnectBase <= Seconds::zero())
    add("cloud.reconnect.base", "must be greater than zero");
  if (c.cloud.reconnectCap < c.cloud.reconnectBase)
    add("cloud.reconnect.cap", "must not be smaller than cloud.reconnect.base");
  if (c.cloud.maxMessageBytes < (int64_t{64} << 10) ||
      c.cloud.maxMessageBytes > (int64_t{64} << 20))
    add("cloud.max_message_bytes", "must be from 65536 to 67108864 (64 KiB to 64 MiB)");
  checkTls(c.cloud.tls, "cloud.tls", errs, certificatesManaged(c));
  if (c.cloud.transport == "mqtt") {
    if (auto e = detail::uriProblem(c.cloud.mqtt.broker,
                                    {"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://"}))
      add("cloud.mqtt.broker", *e);
    if (c.cloud.mqtt.prefix.empty()) add("cloud.mqtt.prefix", "must not be empty");
  }
  if (c.cloud.mqtt.encoding != "json" && c.cloud.mqtt.encoding != "protobuf")
    add("cloud.mqtt.encoding", "must be one of json, protobuf");
  if (!c.cloud.mqtt.passwordFile.empty() && !readable(c.cloud.mqtt.passwordFile))
    add("cloud.mqtt.password_file", "cannot read file \"" + c.cloud.mqtt.passwordFile + "\"");
  if (c.cloud.transport == "websocket") {
    if (!hasScheme(c.cloud.websocket.server, {"wss://"}))
      add("cloud.websocket.server",
          "is required with transport websocket and must start with wss://");
    else if (auto e = detail::uriProblem(c.cloud.websocket.server, {"wss://"}))
      add("cloud.websocket.server", *e);
    if (c.cloud.websocket.projectId.empty()) add("cloud.websocket.project_id", "must not be empty");
  }
  if (!c.cloud.websocket.certServer.empty()) {
    if (auto e = detail::uriProblem(c.cloud.websocket.certServer, {"https://"}))
      add("cloud.websocket.cert_server", *e);
  }
  if (!c.cloud.websocket.tokenFile.empty() && !readable(c.cloud.websocket.tokenFile))
    add("cloud.websocket.token_file", "cannot read file \"" + c.cloud.websocket.tokenFile + "\"");
  if (c.store.outboxMaxRows < 1) add("store.outbox_max_rows", "must be at least 1");
  if (c.store.outboxMaxBytes < 4096) add("store.outbox_max_bytes", "must be at least 4096");
  if (c.store.commitWindow < Seconds::zero() || c.store.commitWindow > std::chrono::seconds(1))
    add("store.commit_window", "must be between 0 and 1s");
  if (deploy::isHollowEndpoint(c.runtime.endpoint)) {
    if (auto h = deploy::parseHollowEndpoint(c.runtime.endpoint); !h.isOk())
      add("runtime.endpoint", h.status().message());
  } else if (!hasScheme(c.runtime.endpoint, {"unix://"})) {
    add("runtime.endpoint",
        "must be a unix:// socket address (or hollow:// for a simulated runtime, "
        "docs/hollow-nodes.md)");
  }
  if (c.runtime.ns.empty()) add("runtime.namespace", "must not be empty");
  if (c.runtime.sandboxImage.empty()) add("runtime.sandbox_image", "must not be empty");
  if (c.runtime.requestTimeout <= Seconds::zero())
    add("runtime.request_timeout", "must be greater than zero");
  if (c.runtime.resyncInterval <= Seconds::zero())
    add("runtime.resync_interval", "must be greater than zero");
  if (c.runtime.nodeStatusInterval <= Seconds::zero())
    add("runtime.node_status_interval", "must be greater than zero");
  if (c.device.enabled) {
    if (auto e = detail::uriProblem(c.device.broker,
                                    {"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://"}))
      add("device.broker", *e);
  }
  checkTls(c.device.tls, "device.tls", errs);
  if (!c.device.passwordFile.empty() && !readable(c.device.passwordFile))
    add("device.password_file", "cannot read file \"" + c.device.passwordFile + "\"");
  if (!c.device.deviceIdForm.empty() && c.device.deviceIdForm != "namespaced" &&
      c.device.deviceIdForm != "name")
    add("device.device_id_form", "must be one of namespaced, name (or left out)");
  // Twin limits.
  if (c.device.maxDevices < 1) add("device.max_devices", "must be at least 1");
  if (c.device.maxPropertiesPerDevice < 1)
    add("device.max_properties_per_device", "must be at least 1");
  if (c.device.maxValueBytes < 1 || c.device.maxValueBytes > 65536)
    add("device.max_value_bytes", "must be between 1 and 65536");
  if (c.api.socket.empty() || c.api.socket[0] != '/')
    add("api.socket", "must be an absolute path");
  else if (c.api.socket.size() > 100)
    add("api.socket", "is too long for a unix socket (over 100 bytes)");
  if (!c.api.metricsAddress.empty()) {
    if (auto e = detail::listenAddressProblem(c.api.metricsAddress))
      add("api.metrics_address",
          "must be host:port with an IP address (127.0.0.1:10351, [::1]:10351), empty turns it "
          "off: " +
              *e);
  }
  detail::validateLimits(c, errs);
  detail::validateUpgrade(c, errs);
  detail::validateStream(c, errs);
}

}  // namespace

std::string ConfigErrors::toString() const {
  std::string out;
  for (const auto& e : errors) out += e.toString() + "\n";
  return out;
}

Environment processEnvironment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    if (kv.rfind("OUTPOST_", 0) != 0) continue;
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

std::string envNameFor(const std::string& keyPath) {
  std::string out = "OUTPOST_";
  for (char ch : keyPath) {
    out += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  }
  return out;
}

std::vector<std::string> configKeyPaths() {
  Config c;
  std::vector<std::string> out;
  for (const auto& f : schema(c)) out.push_back(f.path);
  return out;
}

LoadResult loadConfig(const std::string& yamlText, const Environment& env) {
  LoadResult r;
  auto fields = schema(r.config);
  try {
    YAML::Node root = YAML::Load(yamlText);
    if (root.IsMap()) {
      walk(root, "", fields, r.errors);
    } else if (!root.IsNull()) {
      r.errors.errors.push_back({"(top level)", "must be a map of sections"});
    }
  } catch (const YAML::Exception& e) {
    r.errors.errors.push_back({"(yaml)", "line " + std::to_string(e.mark.line + 1) + ", column " +
                                             std::to_string(e.mark.column + 1) + ": " + e.msg});
    return r;
  }
  std::vector<std::string> known;
  for (auto& f : fields) {
    std::string name = envNameFor(f.path);
    known.push_back(name);
    auto it = env.find(name);
    if (it == env.end()) continue;
    if (auto e = f.fromText(it->second))
      r.errors.errors.push_back({f.path + " (from " + name + ")", *e});
  }
  // A variable that starts like a section's overrides but names no key is a typo worth stopping
  // for; other OUTPOST_* variables belong to someone else and are left alone.
  for (const auto& entry : env) {
    const std::string& name = entry.first;  // not a binding: clang 14 cannot capture one
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    // `var`, not the binding itself: clang before 16 (clang-tidy) cannot capture a binding.
    bool looksLikeKey = std::any_of(fields.begin(), fields.end(), [&var = name](const Field& f) {
      std::string section = envNameFor(f.path.substr(0, f.path.find('.'))) + "_";
      return var.rfind(section, 0) == 0;
    });
    if (looksLikeKey) {
      r.errors.errors.push_back({name, "is not a configuration key (see docs/configuration.md)"});
    }
  }
  defaultManagedCertificates(r.config);
  validate(r.config, r.errors);
  return r;
}

LoadResult loadConfigFile(const std::string& path, const Environment& env) {
  std::string text;
  if (auto problem = detail::readConfigText(path, text)) {
    LoadResult r;
    r.errors.errors.push_back({"(file)", *problem});
    return r;
  }
  return loadConfig(text, env);
}

}  // namespace outpost::agent
