#include "support/edgecore_node.h"

#include <arpa/inet.h>

#include <regex>

namespace outpost::test {

using nlohmann::json;

namespace {

std::string text(const json& j, const std::string& key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

bool ipAddress(const std::string& a) {
  unsigned char buf[16];
  return inet_pton(AF_INET, a.c_str(), buf) == 1 || inet_pton(AF_INET6, a.c_str(), buf) == 1;
}

}  // namespace

std::vector<std::string> edgeCoreNodeDifferences(const json& node) {
  std::vector<std::string> out;
  if (!node.is_object()) return {"not a JSON object"};
  json labels = node.value("metadata", json::object()).value("labels", json::object());
  for (const char* l : {"kubernetes.io/hostname", "node-role.kubernetes.io/edge"})
    if (!labels.is_object() || !labels.contains(l)) out.push_back(std::string("no label ") + l);
  json status = node.value("status", json::object());
  if (!status.is_object()) return {"status is not an object"};

  bool internal = false, hostname = false;
  for (const auto& a : status.value("addresses", json::array())) {
    if (text(a, "type") == "InternalIP" && ipAddress(text(a, "address"))) internal = true;
    if (text(a, "type") == "Hostname" && !text(a, "address").empty()) hostname = true;
  }
  if (!internal) out.push_back("no InternalIP address");
  if (!hostname) out.push_back("no Hostname address");

  for (const char* list : {"capacity", "allocatable"}) {
    json l = status.value(list, json::object());
    for (const char* r : {"cpu", "memory", "pods"})
      if (text(l, r).empty()) out.push_back(std::string("no ") + r + " in " + list);
  }

  json port = status.value("daemonEndpoints", json::object())
                  .value("kubeletEndpoint", json::object())
                  .value("Port", json());
  if (!port.is_number_integer() || port.get<int64_t>() <= 0)
    out.push_back("daemonEndpoints.kubeletEndpoint.Port is " + port.dump() + ", not a port");

  json info = status.value("nodeInfo", json::object());
  for (const char* f :
       {"machineID", "bootID", "kernelVersion", "osImage", "architecture", "operatingSystem"})
    if (text(info, f).empty()) out.push_back(std::string("nodeInfo.") + f + " is empty");
  static const std::regex kVersion(R"(^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$)");
  std::string version = text(info, "kubeletVersion");
  if (!std::regex_match(version, kVersion))
    out.push_back("nodeInfo.kubeletVersion \"" + version + "\" is not a version");

  bool ready = false;
  for (const auto& c : status.value("conditions", json::array())) {
    if (text(c, "type") == "Ready") ready = true;
    if (text(c, "lastTransitionTime").empty())
      out.push_back("condition " + text(c, "type") + " has no lastTransitionTime");
  }
  if (!ready) out.push_back("no Ready condition");
  return out;
}

}  // namespace outpost::test
