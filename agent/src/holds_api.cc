// On-site holds over the local API: the pods named, checked, handed to deploy.

#include "holds_api.h"

#include "api_answers.h"
#include "outpost/validation/validation.h"

namespace outpost::agent {
namespace {

using nlohmann::json;

// "<ns>/<name>" or "<name>" (namespace default) -> "<ns>/pod/<name>", or why not.
core::Result<std::vector<std::string>> podKeys(const json& body) {
  std::vector<std::string> keys;
  auto pods = body.find("pods");
  if (pods == body.end()) return keys;
  if (!pods->is_array()) return core::invalidArgument("pods: a list of pod names");
  for (const auto& p : *pods) {
    if (!p.is_string()) return core::invalidArgument("pods: a list of pod names");
    std::string s = p.get<std::string>();
    auto slash = s.find('/');
    std::string ns = slash == std::string::npos ? "default" : s.substr(0, slash);
    std::string name = slash == std::string::npos ? s : s.substr(slash + 1);
    OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("namespace", ns));
    OUTPOST_RETURN_IF_ERROR(validation::dnsSubdomain("pod name", name));
    keys.push_back(ns + "/pod/" + name);
  }
  return keys;
}

core::Result<json> parseBody(const ApiRequest& req) {
  if (req.body.empty()) return json::object();
  json j = json::parse(req.body, nullptr, false);
  if (!j.is_object()) return core::invalidArgument("the body must be a JSON object");
  return j;
}

}  // namespace

json holdsJson(DeployModule& deploy) {
  auto h = deploy.holds();
  if (!h.isOk()) return nullptr;
  json holds = json::array();
  for (const auto& hold : h->first) {
    json j = {{"pod", hold.pod.empty() ? "*" : hold.pod}};
    if (hold.until) j["until"] = core::formatRfc3339(*hold.until);
    holds.push_back(std::move(j));
  }
  json held = json::array();
  for (const auto& u : h->second) {
    json j = {{"pod", u.pod},
              {"runningVersion", u.runningVersion},
              {"pendingVersion", u.pendingVersion},
              {"deletion", u.deletion},
              {"reason", u.reason},
              {"message", u.message}};
    if (u.heldUntil) j["heldUntil"] = core::formatRfc3339(*u.heldUntil);
    held.push_back(std::move(j));
  }
  return json{{"holds", holds}, {"held", held}};
}

ApiResponse getHolds(DeployModule& deploy) {
  json j = holdsJson(deploy);
  if (j.is_null()) return errorAnswer(503, "deploy is not running");
  return jsonAnswer(200, j);
}

ApiResponse postHold(DeployModule& deploy, const ApiRequest& req) {
  auto body = parseBody(req);
  if (!body.isOk()) return errorAnswer(400, "bad request: " + body.status().message());
  auto keys = podKeys(*body);
  if (!keys.isOk()) return errorAnswer(400, "bad request: " + keys.status().message());
  std::optional<core::WallTime> until;
  if (auto u = body->find("until"); u != body->end() && !u->is_null()) {
    if (!u->is_number_integer() || u->get<int64_t>() <= 0)
      return errorAnswer(400, "bad request: until: unix milliseconds");
    until = core::WallTime(std::chrono::milliseconds(u->get<int64_t>()));
  }
  if (auto s = deploy.hold(*keys, until); !s.isOk()) return errorAnswer(503, s.message());
  return getHolds(deploy);
}

ApiResponse postRelease(DeployModule& deploy, const ApiRequest& req) {
  auto body = parseBody(req);
  if (!body.isOk()) return errorAnswer(400, "bad request: " + body.status().message());
  auto keys = podKeys(*body);
  if (!keys.isOk()) return errorAnswer(400, "bad request: " + keys.status().message());
  if (auto s = deploy.release(*keys); !s.isOk()) return errorAnswer(503, s.message());
  return getHolds(deploy);
}

}  // namespace outpost::agent
