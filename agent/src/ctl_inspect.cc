#include "ctl_inspect.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "manifests.h"
#include "outpost/agent/api_server.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/validation/validation.h"

namespace outpost::agent {

nlohmann::json parseAnswer(const std::string& body, std::string* why) {
  core::Status within = validation::jsonWithin(body, {kMaxAnswerDepth, 256u << 20});
  if (!within.isOk()) {
    if (why) *why = "the agent's answer is refused: " + within.message();
    return nlohmann::json::value_t::discarded;
  }
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() && why) *why = "the agent's answer is not JSON: " + body.substr(0, 200);
  return j;
}

bool reportUnshown(const nlohmann::json& item) {
  if (!item.is_object() || !item.contains("error") || !item["error"].is_string()) return false;
  std::cerr << "outpostctl: " << item.value("key", "?") << ": " << item["error"].get<std::string>()
            << "\n";
  return true;
}

namespace fs = std::filesystem;
using nlohmann::json;

std::string urlEncode(const std::string& s) {
  std::ostringstream out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out << ch;
    } else {
      out << '%' << std::uppercase << std::hex << std::setw(2) << std::setfill('0')
          << static_cast<int>(ch) << std::dec << std::nouppercase;
    }
  }
  return out.str();
}

int callAgent(const std::string& socket, const std::string& method, const std::string& target,
              const std::string& body, json& out) {
  auto r = callUnixSocket(socket, method, target, body);
  if (!r.isOk()) {
    std::cerr << "outpostctl: " << r.status().message()
              << "\nIs outpostd running? (systemctl status outpost; or pass --socket PATH)\n";
    return kExitUnavailable;
  }
  std::string problem;
  out = parseAnswer(r->body, &problem);
  if (r->status != 200) {
    std::string why = out.is_object() ? out.value("error", r->body) : r->body;
    if (r->status == 404) {
      std::cerr << "outpostctl: " << why << "\n";
      return kExitNotFound;
    }
    std::cerr << "outpostctl: the agent answered " << r->status << ": " << why << "\n";
    return r->status == 400 ? kExitUsage : kExitFailure;
  }
  if (out.is_discarded()) {
    std::cerr << "outpostctl: " << problem << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

int fetchObject(const InspectOptions& o, const std::string& type, const std::string& name,
                json& item) {
  json items;
  int rc = callAgent(
      o.socket, "GET",
      "/v1/resources?type=" + type + "&namespace=" + urlEncode(o.ns) + "&name=" + urlEncode(name),
      "", items);
  if (rc != kExitOk) return rc;
  if (!items.is_array() || items.empty()) {
    std::cerr << "outpostctl: " << type << " \"" << name << "\" not found in namespace " << o.ns
              << "\n";
    return kExitNotFound;
  }
  item = items[0];
  if (reportUnshown(item)) return kExitFailure;
  return kExitOk;
}

namespace {

int fetch(const std::string& socket, const std::string& target, json& out) {
  return callAgent(socket, "GET", target, "", out);
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-25T21:30:00Z" or with a fraction; nullopt when not a time.
std::optional<int64_t> parseTimeMs(const std::string& t) {
  std::tm tm{};
  int ms = 0;
  if (t.size() < 20) return std::nullopt;
  std::istringstream in(t.substr(0, 19));
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return std::nullopt;
  if (t[19] == '.') {
    std::string frac = t.substr(20, 3);
    while (frac.size() < 3) frac += '0';
    if (std::all_of(frac.begin(), frac.end(), ::isdigit)) ms = std::stoi(frac);
  }
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

std::string duration(int64_t ms) {
  int64_t s = std::max<int64_t>(0, ms / 1000);
  std::ostringstream out;
  if (s >= 86400)
    out << s / 86400 << "d" << (s % 86400) / 3600 << "h";
  else if (s >= 3600)
    out << s / 3600 << "h" << (s % 3600) / 60 << "m";
  else if (s >= 60)
    out << s / 60 << "m" << s % 60 << "s";
  else
    out << s << "s";
  return out.str();
}

// "21:30:00Z (3m ago)" style, for a timestamp in an object.
std::string when(const std::string& t) {
  auto ms = parseTimeMs(t);
  if (!ms) return t.empty() ? "-" : t;
  return t + " (" + duration(nowMs() - *ms) + " ago)";
}

int printDocument(const json& doc, const std::string& output) {
  if (output == "yaml") {
    std::cout << jsonToYaml(doc.dump());
  } else {
    std::cout << doc.dump(2) << "\n";
  }
  return kExitOk;
}

void field(const std::string& name, const std::string& value, int indent = 0) {
  int width = std::max(18 - indent, static_cast<int>(name.size()) + 2);
  std::cout << std::string(indent, ' ') << std::left << std::setw(width) << (name + ":") << value
            << "\n";
}

std::string labelsText(const json& meta, const char* what) {
  if (!meta.contains(what) || !meta[what].is_object() || meta[what].empty()) return "<none>";
  std::string out;
  for (const auto& [k, v] : meta[what].items()) {
    if (!out.empty()) out += ", ";
    out += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

void header(const json& item) {
  const json& meta = item["object"].value("metadata", json::object());
  field("Name", item.value("name", ""));
  field("Namespace", item.value("namespace", ""));
  field("UID", item.value("uid", ""));
  field("Version", item.value("resourceVersion", ""));
  field("Labels", labelsText(meta, "labels"));
  field("Annotations", labelsText(meta, "annotations"));
  field("Updated", duration(nowMs() - item.value("updated", int64_t{0})) + " ago (from " +
                       item.value("origin", "?") + ")");
}

// --- describe pod ------------------------------------------------------------------------------

std::string stateText(const json& state) {
  if (!state.is_object() || state.empty()) return "-";
  if (state.contains("running")) {
    return "Running, started " + when(state["running"].value("startedAt", ""));
  }
  if (state.contains("waiting")) {
    const auto& w = state["waiting"];
    std::string s = "Waiting (" + w.value("reason", "") + ")";
    if (!w.value("message", "").empty()) s += ": " + w.value("message", "");
    return s;
  }
  if (state.contains("terminated")) {
    const auto& t = state["terminated"];
    std::string s = "Terminated (" + t.value("reason", "") + "), exit code " +
                    std::to_string(t.value("exitCode", 0));
    if (!t.value("finishedAt", "").empty()) s += ", finished " + when(t.value("finishedAt", ""));
    return s;
  }
  return state.dump();
}

std::string joined(const json& list) {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& a : list) {
    if (!out.empty()) out += " ";
    out += a.is_string() ? a.get<std::string>() : a.dump();
  }
  return out;
}

void printContainers(const char* title, const json& specs, const json& statuses) {
  if (!specs.is_array() || specs.empty()) return;
  std::cout << title << ":\n";
  for (const auto& c : specs) {
    std::string name = c.value("name", "");
    json st = json::object();
    for (const auto& s : statuses.is_array() ? statuses : json::array()) {
      if (s.value("name", "") == name) st = s;
    }
    std::cout << "  " << name << ":\n";
    field("Image", c.value("image", ""), 4);
    if (!st.value("imageID", "").empty()) field("Image ID", st.value("imageID", ""), 4);
    if (!st.value("containerID", "").empty()) field("Container ID", st.value("containerID", ""), 4);
    if (c.contains("command")) field("Command", joined(c["command"]), 4);
    if (c.contains("args")) field("Args", joined(c["args"]), 4);
    field("State", st.contains("state") ? stateText(st["state"]) : "not reported yet", 4);
    if (st.contains("lastState") && !st["lastState"].empty())
      field("Last State", stateText(st["lastState"]), 4);
    field("Ready", st.value("ready", false) ? "True" : "False", 4);
    field("Restart Count", std::to_string(st.value("restartCount", 0)), 4);
    if (c.contains("env") && c["env"].is_array() && !c["env"].empty()) {
      std::cout << "    Environment:\n";
      for (const auto& e : c["env"]) {
        std::string v = e.contains("value")
                            ? e["value"].get<std::string>()
                            : "<from " + e.value("valueFrom", json::object()).dump() + ">";
        std::cout << "      " << e.value("name", "") << "=" << v << "\n";
      }
    }
    if (c.contains("volumeMounts") && c["volumeMounts"].is_array()) {
      std::cout << "    Mounts:\n";
      for (const auto& m : c["volumeMounts"]) {
        std::cout << "      " << m.value("mountPath", "") << " from " << m.value("name", "")
                  << (m.value("readOnly", false) ? " (ro)" : " (rw)") << "\n";
      }
    }
  }
}

void printEvents(const json& events) {
  std::cout << "Events:";
  if (!events.is_array() || events.empty()) {
    std::cout << " <none since the agent started>\n";
    return;
  }
  std::cout << "\n  " << std::left << std::setw(9) << "TYPE" << std::setw(24) << "REASON"
            << std::setw(14) << "AGE" << std::setw(12) << "CONTAINER"
            << "MESSAGE\n";
  for (const auto& e : events) {
    auto first = parseTimeMs(e.value("firstTimestamp", ""));
    auto last = parseTimeMs(e.value("lastTimestamp", ""));
    std::string age = last ? duration(nowMs() - *last) : "?";
    int count = e.value("count", 1);
    if (count > 1 && first) age += " (x" + std::to_string(count) + ")";
    std::cout << "  " << std::setw(9) << e.value("type", "") << std::setw(24)
              << e.value("reason", "") << std::setw(14) << age << std::setw(12)
              << (e.value("container", "").empty() ? "-" : e.value("container", ""))
              << e.value("message", "") << "\n";
  }
}

int describePod(const InspectOptions& o, const std::string& name) {
  json item;
  int rc = fetchObject(o, "pod", name, item);
  if (rc != kExitOk) return rc;
  json runtime;
  auto r =
      callUnixSocket(o.socket, "GET",
                     "/v1/pods/runtime?namespace=" + urlEncode(o.ns) + "&name=" + urlEncode(name));
  if (r.isOk() && r->status == 200) runtime = parseAnswer(r->body);
  if (!runtime.is_object()) runtime = json::object();
  if (o.output != "table") {
    json doc = item["object"];
    doc["events"] = runtime.value("events", json::array());
    if (runtime.contains("logDirectory")) doc["logDirectory"] = runtime["logDirectory"];
    return printDocument(doc, o.output);
  }
  const json& pod = item["object"];
  const json spec = pod.value("spec", json::object());
  const json status = pod.value("status", json::object());
  header(item);
  field("Phase", status.value("phase", "not reported yet"));
  if (!status.value("reason", "").empty()) field("Reason", status.value("reason", ""));
  if (!status.value("message", "").empty()) field("Message", status.value("message", ""));
  if (!status.value("startTime", "").empty())
    field("Start Time", when(status.value("startTime", "")));
  field("Pod IP", status.value("podIP", "-"));
  field("Restart Policy", spec.value("restartPolicy", "Always"));
  if (spec.value("hostNetwork", false)) field("Host Network", "true");
  if (!spec.value("runtimeClassName", "").empty())
    field("Runtime Class", spec.value("runtimeClassName", ""));
  if (runtime.contains("logDirectory")) field("Log Directory", runtime.value("logDirectory", ""));
  printContainers("Init Containers", spec.value("initContainers", json::array()),
                  status.value("initContainerStatuses", json::array()));
  printContainers("Containers", spec.value("containers", json::array()),
                  status.value("containerStatuses", json::array()));
  std::cout << "Conditions:";
  if (status.contains("conditions") && status["conditions"].is_array()) {
    std::cout << "\n  " << std::left << std::setw(18) << "TYPE" << std::setw(8) << "STATUS"
              << "LAST TRANSITION\n";
    for (const auto& c : status["conditions"]) {
      std::cout << "  " << std::setw(18) << c.value("type", "") << std::setw(8)
                << c.value("status", "") << when(c.value("lastTransitionTime", ""));
      if (!c.value("reason", "").empty()) std::cout << "  " << c.value("reason", "");
      std::cout << "\n";
    }
  } else {
    std::cout << " <none reported yet>\n";
  }
  if (spec.contains("volumes") && spec["volumes"].is_array() && !spec["volumes"].empty()) {
    std::cout << "Volumes:\n";
    for (const auto& v : spec["volumes"]) {
      std::string what = "?";
      if (v.contains("configMap")) what = "configMap " + v["configMap"].value("name", "");
      if (v.contains("secret")) what = "secret " + v["secret"].value("secretName", "");
      if (v.contains("emptyDir")) what = "emptyDir";
      if (v.contains("hostPath")) what = "hostPath " + v["hostPath"].value("path", "");
      std::cout << "  " << v.value("name", "") << ": " << what << "\n";
    }
  }
  printEvents(runtime.value("events", json::array()));
  return kExitOk;
}

// --- describe configmap / secret ---------------------------------------------------------------

int describeData(const InspectOptions& o, const std::string& type, const std::string& name) {
  json item;
  int rc = fetchObject(o, type, name, item);
  if (rc != kExitOk) return rc;
  if (o.output != "table") return printDocument(item["object"], o.output);
  const json& obj = item["object"];
  header(item);
  if (type == "secret") field("Type", obj.value("type", "Opaque"));
  std::cout << "Data:\n";
  size_t n = 0;
  for (const char* f : {"data", "stringData", "binaryData"}) {
    if (!obj.contains(f) || !obj[f].is_object()) continue;
    for (const auto& [k, v] : obj[f].items()) {
      ++n;
      std::string text = v.is_string() ? v.get<std::string>() : v.dump();
      if (type == "secret") {
        // The agent sends "(hidden, N bytes)" in place of every value.
        auto open = text.find(", ");
        auto close = text.rfind(')');
        std::string size = open != std::string::npos && close != std::string::npos && close > open
                               ? text.substr(open + 2, close - open - 2)
                               : "hidden";
        std::cout << "  " << k << ": " << size << "\n";
      } else if (std::string(f) == "binaryData") {
        std::cout << "  " << k << ": " << text.size() << " bytes of base64\n";
      } else {
        std::cout << "  " << k << ":\n";
        std::istringstream lines(text);
        std::string line;
        while (std::getline(lines, line)) std::cout << "    " << line << "\n";
      }
    }
  }
  if (n == 0) std::cout << "  <none>\n";
  return kExitOk;
}

// --- twins -------------------------------------------------------------------------------------

// Devices whose id is DEVICE, or <namespace>/DEVICE, or whose name is DEVICE.
int fetchTwins(const InspectOptions& o, const std::string& device, json& out) {
  json all;
  int rc = fetch(o.socket, "/v1/twins", all);
  if (rc != kExitOk) return rc;
  out = json::array();
  for (const auto& d : all.is_array() ? all : json::array()) {
    std::string id = d.value("device", "");
    if (device.empty() || id == device || id == o.ns + "/" + device ||
        (id.find('/') == std::string::npos && d.value("name", "") == device)) {
      out.push_back(d);
    }
  }
  if (!device.empty() && out.empty()) {
    std::cerr << "outpostctl: no twin for device \"" << device << "\" (namespace " << o.ns << ")\n";
    return kExitNotFound;
  }
  return kExitOk;
}

std::string valueText(const json& v) {
  if (!v.is_object()) return "-";
  return v.value("value", "");
}

int64_t latestUpdate(const json& p) {
  int64_t t = 0;
  for (const char* side : {"expected", "actual"}) {
    if (p.contains(side) && p[side].is_object())
      t = std::max(t, p[side].value("timestamp", int64_t{0}));
  }
  return t;
}

void printTwinTable(const json& devices) {
  std::cout << std::left << std::setw(24) << "DEVICE" << std::setw(20) << "PROPERTY"
            << std::setw(10) << "TYPE" << std::setw(16) << "EXPECTED" << std::setw(16) << "ACTUAL"
            << "UPDATED\n";
  for (const auto& d : devices) {
    const auto& props = d.value("properties", json::array());
    if (props.empty()) {
      std::cout << std::setw(24) << d.value("device", "") << "<no properties>\n";
      continue;
    }
    for (const auto& p : props) {
      int64_t t = latestUpdate(p);
      std::cout << std::setw(24) << d.value("device", "") << std::setw(20) << p.value("name", "")
                << std::setw(10) << p.value("type", "") << std::setw(16)
                << valueText(p.value("expected", json())) << std::setw(16)
                << valueText(p.value("actual", json()))
                << (t > 0 ? duration(nowMs() - t) + " ago" : "-") << "\n";
    }
  }
}

int describeTwin(const InspectOptions& o, const std::string& name, const json* deviceItem) {
  json twins;
  int rc = fetchTwins(o, name, twins);
  if (rc == kExitNotFound && deviceItem) {
    // A device the twin service does not serve (another node's, or not started): no twin.
    std::cout << "Twin: <none on this node>\n";
    return kExitOk;
  }
  if (rc != kExitOk) return rc;
  for (const auto& d : twins) {
    if (!deviceItem) field("Device", d.value("device", ""));
    field("State", d.value("state", "").empty() ? "unknown" : d.value("state", ""));
    if (!d.value("lastOnline", "").empty()) field("Last Online", d.value("lastOnline", ""));
    if (!deviceItem && !d.value("model", "").empty()) field("Model", d.value("model", ""));
    std::cout << "Twin:\n";
    const auto& props = d.value("properties", json::array());
    if (props.empty()) std::cout << "  <no properties>\n";
    for (const auto& p : props) {
      std::cout << "  " << p.value("name", "") << " (" << p.value("type", "") << ")"
                << (p.value("optional", true) ? "" : ", required") << ":\n";
      for (const char* side : {"expected", "actual"}) {
        std::string label = std::string(side) == "expected" ? "Expected" : "Actual";
        const json& v = p.value(side, json());
        if (!v.is_object()) {
          field(label, "-", 4);
        } else {
          field(label,
                v.value("value", "") + "  (set " +
                    duration(nowMs() - v.value("timestamp", int64_t{0})) + " ago)",
                4);
        }
      }
      bool delta = p["expected"].is_object() &&
                   (!p["actual"].is_object() || valueText(p["expected"]) != valueText(p["actual"]));
      if (delta) field("Delta", "actual differs from expected", 4);
    }
  }
  return kExitOk;
}

int describeDevice(const InspectOptions& o, const std::string& name) {
  json item;
  int rc = fetchObject(o, "device", name, item);
  if (rc != kExitOk) return rc;
  if (o.output != "table") {
    json twins;
    json doc = item["object"];
    if (fetchTwins(o, name, twins) == kExitOk && !twins.empty()) doc["twin"] = twins[0];
    return printDocument(doc, o.output);
  }
  const json& obj = item["object"];
  header(item);
  const json spec = obj.value("spec", json::object());
  if (spec.contains("deviceModelRef")) field("Model", spec["deviceModelRef"].value("name", ""));
  if (spec.contains("nodeName")) field("Node", spec.value("nodeName", ""));
  return describeTwin(o, name, &item);
}

}  // namespace

int cmdDescribe(const InspectOptions& o) {
  if (o.args.size() != 2) {
    std::cerr << "outpostctl: describe needs TYPE NAME (pod, configmap, secret, device, twin)\n";
    return kExitUsage;
  }
  std::string type = o.args[0];
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  static const std::map<std::string, std::string> kAliases = {
      {"pods", "pod"},     {"po", "pod"},         {"configmaps", "configmap"},
      {"cm", "configmap"}, {"secrets", "secret"}, {"devices", "device"},
      {"twins", "twin"}};
  if (auto it = kAliases.find(type); it != kAliases.end()) type = it->second;
  const std::string& name = o.args[1];
  if (type == "pod") return describePod(o, name);
  if (type == "configmap" || type == "secret") return describeData(o, type, name);
  if (type == "device") return describeDevice(o, name);
  if (type == "twin") {
    if (o.output != "table") {
      json twins;
      int rc = fetchTwins(o, name, twins);
      return rc != kExitOk ? rc : printDocument(twins[0], o.output);
    }
    return describeTwin(o, name, nullptr);
  }
  std::cerr << "outpostctl: cannot describe \"" << o.args[0]
            << "\": the types are pod, configmap, secret, device, twin\n";
  return kExitUsage;
}

int cmdGetTwins(const InspectOptions& o) {
  json twins;
  int rc = fetchTwins(o, o.args.size() > 1 ? o.args[1] : "", twins);
  if (rc != kExitOk) return rc;
  if (o.output != "table") {
    json doc = o.args.size() > 1 ? twins[0] : json{{"kind", "List"}, {"items", twins}};
    return printDocument(doc, o.output);
  }
  if (twins.empty()) {
    std::cout << "No device twins on this node.\n";
    return kExitOk;
  }
  printTwinTable(twins);
  return kExitOk;
}

}  // namespace outpost::agent
