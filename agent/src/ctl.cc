// outpostctl: the operator's tool. Talks to the local agent over its unix socket
// (docs/local-api.md).

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ctl_hold.h"
#include "ctl_hollow.h"
#include "ctl_inspect.h"
#include "ctl_rollout.h"
#include "manifests.h"
#include "outpost/agent/agent.h"
#include "outpost/agent/api_server.h"
#include "outpost/agent/config.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/cloudhub/desired_publisher.h"
#include "version.h"

namespace outpost::agent {

namespace {

constexpr const char* kExitCodesHelp =
    "Exit codes: 0 ok, 1 the agent answered an error, 2 not found (object, container, twin or "
    "log), 64 bad command line, 69 agent or broker unreachable.";

struct Globals {
  std::string socket;
  std::string config = "/etc/outpost/outpost.yaml";
  std::string output = "table";
};

// Where desired state is published: flags, else the agent's configuration.
struct PublishFlags {
  std::string node, group, broker, ca, cert, key, prefix;
  std::vector<std::string> files;
  std::string ns = "default";
  std::vector<std::string> args;  // TYPE NAME
};

// --socket wins; else the agent's configuration names it; else the default path.
std::string socketPath(const Globals& g) {
  if (!g.socket.empty()) return g.socket;
  LoadResult loaded = loadConfigFile(g.config, processEnvironment());
  // Only api.socket matters here, so other problems in the file do not stop outpostctl.
  return loaded.config.api.socket;
}

std::string formatUptime(double seconds) {
  auto s = static_cast<long>(seconds);
  std::ostringstream out;
  if (s >= 86400) out << s / 86400 << "d";
  if (s >= 3600) out << (s % 86400) / 3600 << "h";
  if (s >= 60) out << (s % 3600) / 60 << "m";
  out << s % 60 << "s";
  return out.str();
}

int printStatus(const nlohmann::json& j, const std::string& output) {
  if (output == "json") {
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "Node:     " << j.value("node", "") << "\n"
            << "Version:  " << j.value("version", "") << " (outpostctl " << OUTPOST_VERSION << ")\n"
            << "Uptime:   " << formatUptime(j.value("uptime_seconds", 0.0)) << "\n"
            << "Ready:    " << (j.value("ready", false) ? "yes" : "no");
  if (!j.value("ready", false) && !j.value("not_ready_reason", "").empty())
    std::cout << " (" << j.value("not_ready_reason", "") << ")";
  std::cout << "\n";
  if (j.value("hollow", false))
    std::cout << "Hollow:   yes, containers are simulated (runtime hollow://): not a real node\n";
  if (j.contains("cloud") && j["cloud"].is_object()) {
    const auto& c = j["cloud"];
    std::cout << "Cloud:    " << c.value("state", "") << " (" << c.value("transport", "") << ", "
              << c.value("endpoint", "") << ")";
    if (c.value("state", "") != "connected") {
      std::cout << ", offline for " << formatUptime(c.value("offline_seconds", 0.0));
      if (!c.value("last_error", "").empty()) std::cout << ": " << c.value("last_error", "");
    }
    std::cout << "\n";
    if (c.value("rows_refused", int64_t{0}) > 0) {
      std::cout << "Refused:  " << c.value("rows_refused", int64_t{0})
                << " outbox rows the cloud keeps refusing, retried with back-off; e.g. "
                << c.value("row_refused", "") << "\n";
    }
    if (c.contains("last_sync") && c["last_sync"].is_number()) {
      int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
      std::cout << "Synced:   desired set complete "
                << formatUptime(static_cast<double>(now - c["last_sync"].get<int64_t>()) / 1000.0)
                << " ago\n";
    } else {
      std::cout << "Synced:   not since start\n";
    }
    if (c.contains("certificate") && c["certificate"].is_object()) {
      const auto& k = c["certificate"];
      double nowMs = static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
      auto in = [&](const char* key) {
        double at = k[key].get<double>();
        return at >= nowMs ? "in " + formatUptime((at - nowMs) / 1000.0)
                           : formatUptime((nowMs - at) / 1000.0) + " ago";
      };
      std::cout << "Cert:     " << k.value("subject", "");
      if (k.contains("not_after") && k["not_after"].is_number())
        std::cout << ", expires " << in("not_after");
      if (k.contains("next_rotation") && k["next_rotation"].is_number())
        std::cout << ", renews " << in("next_rotation");
      std::cout << ", " << k.value("rotations", int64_t{0}) << " renewed";
      if (!k.value("last_error", "").empty())
        std::cout << ", last renewal failed: " << k.value("last_error", "");
      std::cout << "\n";
    }
  }
  if (j.contains("store") && j["store"].is_object()) {
    const auto& st = j["store"];
    std::cout << "Store:    " << st.value("path", "") << ", "
              << st.value("size_bytes", int64_t{0}) / 1024 << " KiB\n";
    if (st.contains("outbox")) {
      std::cout << "Outbox:   " << st["outbox"].value("rows", int64_t{0}) << " waiting ("
                << st["outbox"].value("bytes", int64_t{0}) << " bytes), "
                << st["outbox"].value("dropped", int64_t{0}) << " dropped over quota\n";
    }
  }
  printHolds(j.value("holds", nlohmann::json()));
  std::cout << "\n";
  std::cout << std::left << std::setw(12) << "MODULE" << std::setw(10) << "STATE"
            << "DETAIL\n";
  for (const auto& m : j.value("modules", nlohmann::json::array())) {
    std::cout << std::left << std::setw(12) << m.value("name", "") << std::setw(10)
              << m.value("state", "") << m.value("detail", "") << "\n";
  }
  return kExitOk;
}

int cmdStatus(const Globals& g) {
  std::string path = socketPath(g);
  auto r = callUnixSocket(path, "GET", "/v1/status");
  if (!r.isOk()) {
    std::cerr << "outpostctl: " << r.status().message() << "\n"
              << "Is outpostd running? (systemctl status outpost; or pass --socket PATH)\n";
    return kExitUnavailable;
  }
  if (r->status != 200) {
    std::cerr << "outpostctl: the agent answered " << r->status << ": " << r->body << "\n";
    return kExitFailure;
  }
  std::string why;
  auto j = parseAnswer(r->body, &why);
  if (j.is_discarded()) {
    std::cerr << "outpostctl: " << why << "\n";
    return kExitFailure;
  }
  return printStatus(j, g.output);
}

std::string readInput(const std::string& path) {
  std::stringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
  } else {
    std::ifstream f(path);
    if (!f) return {};
    ss << f.rdbuf();
  }
  return ss.str();
}

// Plural and short names operators type, as kubectl accepts them.
std::string canonicalType(std::string t) {
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::map<std::string, std::string> kAliases = {{"pods", "pod"},
                                                              {"po", "pod"},
                                                              {"configmaps", "configmap"},
                                                              {"cm", "configmap"},
                                                              {"secrets", "secret"},
                                                              {"devices", "device"},
                                                              {"twins", "twin"},
                                                              {"devicemodels", "devicemodel"}};
  auto it = kAliases.find(t);
  return it == kAliases.end() ? t : it->second;
}

// Connects to the broker named by the flags or the configuration, for the scope named likewise.
int withPublisher(
    const Globals& g, const PublishFlags& f,
    const std::function<int(cloudhub::DesiredPublisher&, const cloudhub::Scope&)>& body) {
  LoadResult loaded = loadConfigFile(g.config, processEnvironment());
  const Config& c = loaded.config;
  if (!f.node.empty() && !f.group.empty()) {
    std::cerr << "outpostctl: give --node or --group, not both\n";
    return kExitUsage;
  }
  cloudhub::Scope scope;
  if (!f.group.empty()) {
    scope = {cloudhub::Scope::Kind::kGroup, f.group};
  } else {
    scope = {cloudhub::Scope::Kind::kNode, f.node.empty() ? c.node.name : f.node};
  }
  if (scope.name.empty()) {
    std::cerr
        << "outpostctl: no target: give --node NAME or --group NAME (or --config with node.name)\n";
    return kExitUsage;
  }
  cloudhub::PublisherOptions o;
  o.broker = f.broker.empty() ? c.cloud.mqtt.broker : f.broker;
  o.prefix = f.prefix.empty() ? c.cloud.mqtt.prefix : f.prefix;
  o.encoding = cloudhub::parseEncoding(c.cloud.mqtt.encoding).value_or(cloudhub::Encoding::kJson);
  o.caFile = f.ca.empty() ? c.cloud.tls.ca : f.ca;
  o.certFile = f.cert.empty() ? c.cloud.tls.cert : f.cert;
  o.keyFile = f.key.empty() ? c.cloud.tls.key : f.key;
  o.username = c.cloud.mqtt.username;
  auto pub = cloudhub::DesiredPublisher::connect(o);
  if (!pub.isOk()) {
    std::cerr << "outpostctl: cannot reach the broker " << o.broker << ": "
              << pub.status().message() << "\n";
    return kExitUnavailable;
  }
  return body(**pub, scope);
}

std::string scopeText(const cloudhub::Scope& s) {
  return (s.kind == cloudhub::Scope::Kind::kNode ? "node " : "group ") + s.name;
}

core::Result<std::vector<ManifestObject>> readManifestFiles(const std::vector<std::string>& files) {
  std::vector<ManifestObject> all;
  for (const auto& file : files) {
    std::string text = readInput(file);
    if (text.empty()) return core::invalidArgument("cannot read " + file + " (or it is empty)");
    auto objs = parseManifests(text, file == "-" ? "standard input" : file);
    if (!objs.isOk()) return objs.status();
    for (auto& o : *objs) all.push_back(std::move(o));
  }
  return all;
}

int cmdApply(const Globals& g, const PublishFlags& f) {
  auto objs = readManifestFiles(f.files);
  if (!objs.isOk()) {
    std::cerr << "outpostctl: " << objs.status().message() << "\n";
    return kExitFailure;
  }
  return withPublisher(g, f, [&](cloudhub::DesiredPublisher& pub, const cloudhub::Scope& scope) {
    std::vector<cloudhub::DesiredObject> desired;
    for (const auto& o : *objs) desired.push_back({o.key, o.json});
    auto done = pub.apply(scope, desired);
    if (!done.isOk()) {
      std::cerr << "outpostctl: " << done.status().message() << "\n";
      return kExitFailure;
    }
    for (const auto& p : *done) {
      std::cout << p.key << " published for " << scopeText(scope) << " (version "
                << p.resourceVersion << ")\n";
    }
    return kExitOk;
  });
}

int cmdDelete(const Globals& g, const PublishFlags& f) {
  std::vector<std::string> keys;
  if (!f.files.empty()) {
    auto objs = readManifestFiles(f.files);
    if (!objs.isOk()) {
      std::cerr << "outpostctl: " << objs.status().message() << "\n";
      return kExitFailure;
    }
    for (const auto& o : *objs) keys.push_back(o.key);
  } else if (f.args.size() == 2) {
    keys.push_back(f.ns + "/" + canonicalType(f.args[0]) + "/" + f.args[1]);
  } else {
    std::cerr << "outpostctl: delete needs -f FILE, or TYPE NAME\n";
    return kExitUsage;
  }
  return withPublisher(g, f, [&](cloudhub::DesiredPublisher& pub, const cloudhub::Scope& scope) {
    auto done = pub.remove(scope, keys);
    if (!done.isOk()) {
      std::cerr << "outpostctl: " << done.status().message() << "\n";
      return kExitFailure;
    }
    for (const auto& k : keys) {
      bool listed = std::find(done->begin(), done->end(), k) != done->end();
      std::cout << k << (listed ? " deleted for " : " was not desired for ") << scopeText(scope)
                << "\n";
    }
    return kExitOk;
  });
}

// PHASE (or the first waiting reason, as kubectl shows CrashLoopBackOff), READY n/m, RESTARTS.
void printPodColumns(const nlohmann::json& status) {
  std::string phase = status.value("phase", "-");
  int ready = 0, total = 0, restarts = 0;
  for (const auto& c : status.value("containerStatuses", nlohmann::json::array())) {
    ++total;
    if (c.value("ready", false)) ++ready;
    restarts += c.value("restartCount", 0);
    if (c.contains("state") && c["state"].contains("waiting")) {
      std::string reason = c["state"]["waiting"].value("reason", "");
      if (!reason.empty() && reason != "ContainerCreating") phase = reason;
    }
  }
  std::string readyText = total ? std::to_string(ready) + "/" + std::to_string(total) : "-";
  std::cout << std::setw(18) << phase << std::setw(7) << readyText << std::setw(10) << restarts;
}

std::string age(int64_t updatedMs) {
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  return formatUptime(static_cast<double>(std::max<int64_t>(0, now - updatedMs)) / 1000.0);
}

int cmdGet(const Globals& g, const PublishFlags& f) {
  if (f.args.empty() || f.args.size() > 2) {
    std::cerr << "outpostctl: get needs TYPE [NAME]\n";
    return kExitUsage;
  }
  std::string type = canonicalType(f.args[0]);
  if (type == "twin") {
    InspectOptions o{socketPath(g), g.output, f.ns == "*" ? "default" : f.ns, f.args, "",
                     false,         -1};
    return cmdGetTwins(o);
  }
  std::string target = "/v1/resources?type=" + type;
  if (f.ns != "*") target += "&namespace=" + f.ns;
  if (f.args.size() == 2) target += "&name=" + f.args[1];
  auto r = callUnixSocket(socketPath(g), "GET", target);
  if (!r.isOk()) {
    std::cerr << "outpostctl: " << r.status().message()
              << "\nIs outpostd running? (or pass --socket PATH)\n";
    return kExitUnavailable;
  }
  if (r->status != 200) {
    std::cerr << "outpostctl: the agent answered " << r->status << ": " << r->body << "\n";
    return kExitFailure;
  }
  std::string why;
  auto items = parseAnswer(r->body, &why);
  if (items.is_discarded()) {
    std::cerr << "outpostctl: " << why << "\n";
    return kExitFailure;
  }
  if (!items.is_array()) {
    std::cerr << "outpostctl: the agent's answer is not a list\n";
    return kExitFailure;
  }
  if (f.args.size() == 2 && items.empty()) {
    std::cerr << "outpostctl: " << type << " \"" << f.args[1] << "\" not found in namespace "
              << f.ns << "\n";
    return kExitNotFound;
  }
  // Objects the agent would not show (nested too deep) are named on standard error and left out.
  nlohmann::json objects = nlohmann::json::array();
  int rc = kExitOk;
  for (const auto& it : items) {
    if (reportUnshown(it))
      rc = kExitFailure;
    else
      objects.push_back(it["object"]);
  }
  if (g.output == "json" || g.output == "yaml") {
    if (f.args.size() == 2 && objects.empty()) return rc;
    nlohmann::json doc =
        f.args.size() == 2
            ? objects[0]
            : nlohmann::json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", objects}};
    if (g.output == "json")
      std::cout << doc.dump(2) << "\n";
    else
      std::cout << jsonToYaml(doc.dump());
    return rc;
  }
  if (items.empty()) {
    std::cout << "No " << type << " objects found" << (f.ns == "*" ? "" : " in namespace " + f.ns)
              << ".\n";
    return kExitOk;
  }
  std::cout << std::left << std::setw(16) << "NAMESPACE" << std::setw(32) << "NAME" << std::setw(16)
            << "VERSION";
  if (type == "secret" || type == "configmap") std::cout << std::setw(6) << "DATA";
  if (type == "pod")
    std::cout << std::setw(18) << "PHASE" << std::setw(7) << "READY" << std::setw(10) << "RESTARTS";
  std::cout << "AGE\n";
  for (const auto& it : items) {
    const nlohmann::json& object =
        it.contains("object") && it["object"].is_object() ? it["object"] : nlohmann::json::object();
    std::cout << std::left << std::setw(16) << it.value("namespace", "") << std::setw(32)
              << it.value("name", "") << std::setw(16) << it.value("resourceVersion", "");
    if (type == "secret" || type == "configmap") {
      size_t n = 0;
      for (const char* field : {"data", "stringData", "binaryData"}) {
        if (object.contains(field) && object[field].is_object()) n += object[field].size();
      }
      std::cout << std::setw(6) << n;
    }
    if (type == "pod") printPodColumns(object.value("status", nlohmann::json::object()));
    std::cout << age(it.value("updated", int64_t{0})) << "\n";
  }
  return rc;
}

}  // namespace

int runCtl(int argc, char** argv) {
  CLI::App app{"outpostctl: inspect and drive the local Outpost agent", "outpostctl"};
  Globals g;
  app.add_option("--socket", g.socket,
                 "the agent's control socket (default: api.socket of --config)");
  app.add_option("-c,--config", g.config, "the agent's configuration, to find its socket")
      ->capture_default_str();
  app.set_version_flag("--version", std::string("outpostctl ") + OUTPOST_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  outpostctl status                 the agent's version, node, uptime and modules\n"
      "  outpostctl status -o json         the same as JSON, for scripts\n"
      "  outpostctl apply -f hello-pod.yaml --node store-17\n"
      "                                    publish desired state to the broker for one node\n"
      "  outpostctl delete pod hello --group tills\n"
      "  outpostctl get pods               what this node holds\n"
      "  outpostctl describe pod hello     containers, conditions and recent events\n"
      "  outpostctl logs hello -f          a container's output, following restarts\n"
      "  outpostctl get twins              device twin properties, expected and actual\n"
      "  outpostctl rollout start -f web-v2.yaml   canary, waves, health gates, rollback\n"
      "Run 'outpostctl COMMAND --help' for a command's options and examples.\n" +
      std::string(kExitCodesHelp));

  auto* status =
      app.add_subcommand("status", "show the agent's version, node, uptime and module states");
  status->footer(
      "Examples:\n"
      "  outpostctl status                 link state, time offline, outbox, store, modules\n"
      "  outpostctl status -o json | jq .cloud\n" +
      std::string(kExitCodesHelp));
  status->add_option("-o,--output", g.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  PublishFlags pf;
  auto addTarget = [&](CLI::App* cmd) {
    auto* node = cmd->add_option("--node", pf.node,
                                 "publish for this node (default: node.name of --config)");
    cmd->add_option("--group", pf.group, "publish for every node of this group")->excludes(node);
    cmd->add_option("--broker", pf.broker, "broker URI (default: cloud.mqtt.broker of --config)");
    cmd->add_option("--prefix", pf.prefix, "topic prefix (default: cloud.mqtt.prefix)");
    cmd->add_option("--ca", pf.ca, "CA file for ssl:// and wss:// (default: cloud.tls.ca)");
    cmd->add_option("--cert", pf.cert, "client certificate (default: cloud.tls.cert)");
    cmd->add_option("--key", pf.key, "client key (default: cloud.tls.key)");
  };
  auto* apply = app.add_subcommand(
      "apply", "publish desired objects from Kubernetes-style YAML or JSON files");
  apply
      ->add_option("-f,--filename", pf.files,
                   "file with one or more documents ('-' reads standard input)")
      ->required();
  addTarget(apply);
  apply->footer(
      "Examples:\n"
      "  outpostctl apply -f hello-pod.yaml               for this node (node.name of --config)\n"
      "  outpostctl apply -f app.yaml --group tills       for every node of a group\n"
      "  kubectl create cm x --from-file=a.conf -o yaml --dry-run=client | outpostctl apply -f "
      "-\n" +
      std::string(kExitCodesHelp));
  auto* del = app.add_subcommand("delete", "withdraw desired objects (-f FILE, or TYPE NAME)");
  del->add_option("-f,--filename", pf.files, "file naming the objects ('-' reads standard input)");
  del->add_option("-n,--namespace", pf.ns, "namespace for TYPE NAME")->capture_default_str();
  del->add_option("args", pf.args, "TYPE NAME");
  addTarget(del);
  del->footer(
      "Examples:\n"
      "  outpostctl delete pod hello                      withdraw default/pod/hello\n"
      "  outpostctl delete -f hello-pod.yaml --node store-17\n" +
      std::string(kExitCodesHelp));
  auto* get = app.add_subcommand(
      "get",
      "list what the local agent holds: pods, configmaps, secrets (values hidden), devices, twins");
  get->add_option("args", pf.args, "TYPE [NAME] (TYPE: pods, configmaps, secrets, devices, twins)")
      ->required();
  get->footer(
      "Examples:\n"
      "  outpostctl get pods                    NAMESPACE NAME VERSION PHASE READY RESTARTS AGE\n"
      "  outpostctl get pods -n '*'             in every namespace\n"
      "  outpostctl get pod hello -o yaml       one object with its status\n"
      "  outpostctl get secrets                 values never leave the agent\n"
      "  outpostctl get twins [DEVICE]          properties with expected and actual values\n" +
      std::string(kExitCodesHelp));
  get->add_option("-n,--namespace", pf.ns, "namespace ('*' for all)")->capture_default_str();
  get->add_option("-o,--output", g.output, "output format")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();

  InspectOptions io;
  auto* describe = app.add_subcommand(
      "describe",
      "show one object in detail: pod, configmap, secret (values hidden), device, twin");
  describe->add_option("args", io.args, "TYPE NAME")->required()->expected(2);
  describe->add_option("-n,--namespace", io.ns, "namespace")->capture_default_str();
  describe->add_option("-o,--output", io.output, "output format")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();
  describe->footer(
      "Examples:\n"
      "  outpostctl describe pod hello        spec summary, containers (image, state, restarts),\n"
      "                                       conditions and the pod's recent events\n"
      "  outpostctl describe pod hello -o json\n"
      "  outpostctl describe secret creds     keys and sizes only\n"
      "  outpostctl describe device thermostat  the device and its twin\n"
      "  outpostctl describe twin thermostat\n"
      "Events are kept in memory (the last 20 per pod, since the agent started).\n" +
      std::string(kExitCodesHelp));
  auto* logs = app.add_subcommand("logs", "print a container's output (its CRI log file)");
  logs->add_option("pod", io.args, "POD")->required()->expected(1);
  logs->add_option("-c,--container", io.container, "the container (needed when there are several)");
  logs->add_flag("-f,--follow", io.follow,
                 "keep printing as the container writes, and follow it across restarts");
  logs->add_option("--tail", io.tail, "only the last N lines (before following)")
      ->check(CLI::NonNegativeNumber);
  logs->add_option("-n,--namespace", io.ns, "namespace")->capture_default_str();
  logs->footer(
      "Examples:\n"
      "  outpostctl logs hello                 the current attempt's output\n"
      "  outpostctl logs web -c nginx --tail 20\n"
      "  outpostctl logs hello -f              follow (Ctrl-C stops); ends when the pod is "
      "removed\n"
      "outpostctl reads the files on this host (it must run here, with read access to the\n"
      "agent's state directory); the agent tells it where they are.\n" +
      std::string(kExitCodesHelp));

  RolloutFlags rf;
  CLI::App* rollout = addRolloutCommand(app, rf);
  HollowFlags hf;
  CLI::App* hollow = addHollowCommand(app, hf);

  HoldOptions ho;
  auto* hold = app.add_subcommand(
      "hold", "defer updates and deletions of running pods on this node (kept across restarts)");
  hold->add_option("pods", ho.pods, "POD... ('<name>' or '<namespace>/<name>'; none: every pod)");
  auto* until = hold->add_option("--until", ho.until,
                                 "until this time: 2026-05-01T06:00:00Z (UTC) or 2026-05-01T06:00 "
                                 "(node local time); default: until released");
  hold->add_option("--for", ho.forDuration, "for this long: 30m, 2h, 1d12h")->excludes(until);
  hold->footer(
      "Examples:\n"
      "  outpostctl hold                      no pod of this node is updated until released\n"
      "  outpostctl hold web --for 2h         web's updates wait two hours\n"
      "  outpostctl status                    the holds and the updates that wait\n"
      "The desired objects are still stored and acknowledged; the running version runs on.\n" +
      std::string(kExitCodesHelp));
  auto* release = app.add_subcommand(
      "release", "end holds and let the updates that wait (also for a maintenance window) go now");
  release->add_option("pods", ho.pods, "POD... (none: every hold and every waiting update)");
  release->footer(
      "Examples:\n"
      "  outpostctl release                   every hold ends, every waiting update goes now\n"
      "  outpostctl release kiosk/web\n" +
      std::string(kExitCodesHelp));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (status->parsed()) return cmdStatus(g);
  if (hold->parsed() || release->parsed()) {
    ho.socket = socketPath(g);
    return hold->parsed() ? cmdHold(ho) : cmdRelease(ho);
  }
  if (apply->parsed()) return cmdApply(g, pf);
  if (del->parsed()) return cmdDelete(g, pf);
  if (rollout->parsed()) {
    rf.config = g.config;
    return runRolloutCommand(*rollout, rf);
  }
  if (hollow->parsed()) {
    hf.socket = socketPath(g);
    return runHollowCommand(*hollow, hf);
  }
  if (get->parsed()) return cmdGet(g, pf);
  if (describe->parsed() || logs->parsed()) {
    io.socket = socketPath(g);
    return describe->parsed() ? cmdDescribe(io) : cmdLogs(io);
  }
  return kExitUsage;
}

}  // namespace outpost::agent
