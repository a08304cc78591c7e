#pragma once
// The input of the deploy fuzzers (pod_spec, volumes): a Pod's JSON, optionally followed by a line
// "---" and a JSON object of the other desired objects the pod may refer to, by store key:
//   {"metadata":{"name":"p"},"spec":{...}}
//   ---
//   {"default/configmap/cm":{"data":{"a":"1"}},"default/secret/s":{"data":{"k":"dmFs"}}}
// The objects' values are handed to deploy as their JSON text, as the store would.

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "outpost/deploy/ports.h"

namespace outpost::fuzz {

class FakeDesired : public deploy::DesiredPods {
 public:
  std::map<std::string, std::string> objects;
  std::vector<deploy::PodRecord> listPods() override { return {}; }
  std::optional<std::string> getObject(const std::string& key) override {
    auto it = objects.find(key);
    if (it == objects.end()) return std::nullopt;
    return it->second;
  }
};

struct DeployInput {
  std::string pod;
  FakeDesired desired;
};

inline DeployInput readDeployInput(std::string_view text) {
  DeployInput in;
  auto parts = split(text, "\n---\n", 2);
  in.pod = std::string(parts[0]);
  if (parts.size() > 1) {
    auto objects = nlohmann::json::parse(parts[1], nullptr, false);
    if (objects.is_object()) {
      for (const auto& [key, value] : objects.items()) {
        // Kept as the store keeps them: JSON text (a string value is taken as the text itself, so
        // malformed objects can be stored too).
        in.desired.objects[key] =
            value.is_string()
                ? value.get<std::string>()
                : value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
    }
  }
  return in;
}

}  // namespace outpost::fuzz
