// The validation library (validation/, outpost::validation): desiredObject on a key and an object
// from the input, jsonWithin against nlohmann's own parse, and the string rules. The input is
// "<ns>/<type>/<name>" on its first line, the object's JSON after it (no newline: the whole input
// is the object, under the key "default/pod/p").
// Checked: nothing throws or crashes; jsonWithin agrees with the depth of the parsed value (deeper
// than maxDepth fails; valid JSON within it passes, unless a NUL byte ends what nlohmann parses);
// what desiredObject accepts is a JSON object whose key parts pass desiredKey, and whose Pod
// volumes, containers, subPaths and items paths pass the single-string rules; a message quotes the
// value printably (no control characters).

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "fuzz_util.h"
#include "outpost/validation/validation.h"

namespace {

using nlohmann::json;
using outpost::fuzz::check;
namespace v = outpost::validation;

// The nesting depth of a parsed value (arrays and objects), without recursion.
size_t depthOf(const json& root) {
  size_t deepest = 0;
  std::vector<std::pair<const json*, size_t>> stack{{&root, 0}};
  while (!stack.empty()) {
    auto [j, d] = stack.back();
    stack.pop_back();
    if (!j->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const auto& child : *j) stack.emplace_back(&child, d + 1);
  }
  return deepest;
}

bool printableMessage(const std::string& m) {
  return std::none_of(m.begin(), m.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// The parts of a Pod that become host paths pass the single-string rules.
void checkAcceptedPod(const json& obj) {
  auto spec = obj.find("spec");
  if (spec == obj.end() || !spec->is_object()) return;
  if (auto vols = spec->find("volumes"); vols != spec->end() && vols->is_array()) {
    for (const auto& vol : *vols) {
      check(vol.is_object() && vol.contains("name") && vol["name"].is_string() &&
                v::dnsLabel("n", vol["name"].get<std::string>()).isOk(),
            "an accepted pod has a volume name that is not a DNS label");
      for (const char* source : {"configMap", "secret"}) {
        auto s = vol.find(source);
        if (s == vol.end() || !s->is_object()) continue;
        auto items = s->find("items");
        if (items == s->end() || !items->is_array()) continue;
        for (const auto& item : *items) {
          check(item.is_object() && item.contains("path") && item["path"].is_string() &&
                    v::relativePath("p", item["path"].get<std::string>()).isOk(),
                "an accepted pod has an items path that is not a relative path");
        }
      }
      if (auto hp = vol.find("hostPath"); hp != vol.end() && hp->is_object()) {
        check(hp->contains("path") && (*hp)["path"].is_string() &&
                  v::absolutePath("p", (*hp)["path"].get<std::string>()).isOk(),
              "an accepted pod has a hostPath that is not an absolute path");
      }
    }
  }
  for (const char* field : {"initContainers", "containers"}) {
    auto list = spec->find(field);
    if (list == spec->end() || !list->is_array()) continue;
    for (const auto& c : *list) {
      check(c.is_object() && c.contains("name") && c["name"].is_string() &&
                v::dnsLabel("n", c["name"].get<std::string>()).isOk(),
            "an accepted pod has a container name that is not a DNS label");
      auto mounts = c.find("volumeMounts");
      if (mounts == c.end() || !mounts->is_array()) continue;
      for (const auto& m : *mounts) {
        auto sub = m.find("subPath");
        if (sub == m.end() || !sub->is_string() || sub->get<std::string>().empty()) continue;
        check(v::relativePath("s", sub->get<std::string>()).isOk(),
              "an accepted pod has a subPath that is not a relative path");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = outpost::fuzz::asText(data, size);
  std::string_view ns = "default", type = "pod", name = "p", object = text;
  if (auto nl = text.find('\n'); nl != std::string_view::npos) {
    auto key = outpost::fuzz::split(text.substr(0, nl), "/", 3);
    if (key.size() == 3) {
      ns = key[0];
      type = key[1];
      name = key[2];
      object = text.substr(nl + 1);
    }
  }

  // jsonWithin against the parsed depth, at a few limits.
  json parsed = json::parse(object, nullptr, false);
  if (!parsed.is_discarded()) {
    size_t depth = depthOf(parsed);
    for (size_t limit : {size_t{0}, size_t{1}, size_t{3}, size_t{100}, depth, depth + 1}) {
      bool within = v::jsonWithin(object, {limit, 64u << 20}).isOk();
      // Deeper than the limit never passes. The converse only without a NUL byte: nlohmann's
      // parser stops at one (the rest is ignored), jsonWithin scans the whole text.
      if (depth > limit) check(!within, "jsonWithin let JSON deeper than its limit through");
      if (depth <= limit && object.find('\0') == std::string_view::npos)
        check(within, "jsonWithin refused JSON within its limit");
    }
  }
  if (!object.empty()) {
    check(!v::jsonWithin(object, {100, object.size() - 1}).isOk(),
          "jsonWithin let a text over maxBytes through");
  }

  auto facts = v::desiredObject(ns, type, name, object);
  check(printableMessage(facts.status().message()), "a message holds a control character");
  auto plain = v::objectFacts(object);
  if (facts.isOk()) {
    check(v::desiredKey(ns, type, name).isOk(), "desiredObject accepted a key desiredKey refuses");
    check(v::jsonWithin(object).isOk(), "desiredObject accepted JSON beyond the limits");
    check(parsed.is_object(), "desiredObject accepted something that is not a JSON object");
    if (type == "pod") checkAcceptedPod(parsed);
    // The facts are metadata.uid and metadata.resourceVersion, when strings.
    auto fact = [&](const char* key) -> std::optional<std::string> {
      auto meta = parsed.find("metadata");
      if (meta == parsed.end() || !meta->is_object()) return std::nullopt;
      auto it = meta->find(key);
      if (it == meta->end() || !it->is_string()) return std::nullopt;
      return it->get<std::string>();
    };
    check(facts.value().uid == fact("uid"), "desiredObject read a uid that is not metadata.uid");
    check(facts.value().resourceVersion == fact("resourceVersion"),
          "desiredObject read a resourceVersion that is not metadata.resourceVersion");
    check(plain.isOk() && plain.value().uid == facts.value().uid &&
              plain.value().resourceVersion == facts.value().resourceVersion,
          "objectFacts disagrees with desiredObject");
  }

  // The single-string rules on the whole text: never crash, messages printable.
  for (auto rule :
       {v::dnsLabel, v::dnsSubdomain, v::uid, v::configKey, v::relativePath, v::absolutePath}) {
    auto r = rule("what", text);
    check(printableMessage(r.message()), "a rule's message holds a control character");
  }
  // Cut at 80 bytes: the last character escaped takes at most 4, then "...".
  check(v::printable(text, 80).size() <= 80 + 3 + 3, "printable() is longer than promised");
  return 0;
}
