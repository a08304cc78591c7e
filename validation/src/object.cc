// desiredObject(): one pass of nlohmann's SAX parser over a desired object's text. No DOM is built:
// the checks run on each value as the parser meets it, at the path it sits at, and the object's
// metadata.uid and metadata.resourceVersion are picked up on the way, so the cloud link reads an
// object's text once (docs/benchmarks.md, B3).

#include <nlohmann/json.hpp>
#include <set>

#include "outpost/validation/validation.h"

namespace outpost::validation {
namespace {

using nlohmann::json;

// Members an object must have, by the path it sits at.
enum Need : unsigned { kNeedName = 1, kNeedPath = 2, kNeedKey = 4 };

// One open object or array on the way down to the value being read.
struct Frame {
  bool array = false;
  size_t index = 0;   // an array: the index of the element being read
  std::string key;    // an object: the member being read
  unsigned need = 0;  // an object: the members it must have (Need bits)
  unsigned seen = 0;  // and those it had
};

// A pattern element: a key ("name"), alternatives ("configMap|secret"), any key ("*") or an array
// index ("#").
bool segmentMatches(std::string_view pattern, const Frame& f) {
  if (pattern == "#") return f.array;
  if (f.array) return false;
  if (pattern == "*") return true;
  while (true) {
    size_t bar = pattern.find('|');
    if (pattern.substr(0, bar) == f.key) return true;
    if (bar == std::string_view::npos) return false;
    pattern.remove_prefix(bar + 1);
  }
}

class Checker : public nlohmann::json_sax<json> {
 public:
  Checker(std::string_view ns, std::string_view type, std::string_view name, bool rules)
      : ns_(ns), type_(type), name_(name), rules_(rules) {
    if (type == "configmap") dataMaps_ = "data|binaryData";
    if (type == "secret") dataMaps_ = "data|stringData";
  }

  const core::Status& status() const { return status_; }
  ObjectFacts& facts() { return facts_; }

  bool null() override { return value(Kind::kNull, {}); }
  bool boolean(bool) override { return value(Kind::kOther, {}); }
  bool number_integer(json::number_integer_t) override { return value(Kind::kOther, {}); }
  bool number_unsigned(json::number_unsigned_t) override { return value(Kind::kOther, {}); }
  bool number_float(json::number_float_t, const std::string&) override {
    return value(Kind::kOther, {});
  }
  bool string(std::string& s) override { return value(Kind::kString, s); }
  bool binary(json::binary_t&) override { return value(Kind::kOther, {}); }

  bool start_object(std::size_t) override {
    if (!value(Kind::kObject, {})) return false;
    Frame f;
    if (rules_) f.need = need();
    frames_.push_back(std::move(f));
    return true;
  }
  bool end_object() override {
    Frame f = std::move(frames_.back());
    frames_.pop_back();
    if (unsigned missing = f.need & ~f.seen) {
      const char* member = missing & kNeedName ? "name" : missing & kNeedKey ? "key" : "path";
      return fail(core::invalidArgument(path(frames_.size()) + (frames_.empty() ? "" : ".") +
                                        member + ": missing"));
    }
    return next();
  }
  bool start_array(std::size_t) override {
    if (!value(Kind::kArray, {})) return false;
    Frame f;
    f.array = true;
    frames_.push_back(std::move(f));
    return true;
  }
  bool end_array() override {
    frames_.pop_back();
    return next();
  }
  bool key(std::string& k) override {
    Frame& f = frames_.back();
    f.key = k;
    if (k == "name") f.seen |= kNeedName;
    if (k == "path") f.seen |= kNeedPath;
    if (k == "key") f.seen |= kNeedKey;
    if (rules_ && !dataMaps_.empty() && at({dataMaps_, "*"})) {
      // A ConfigMap or Secret key becomes a file name when a pod mounts the object.
      std::string what = frames_[0].key + " key";
      if (auto s = configKey(what, k); !s.isOk()) return fail(s);
      if (!dataKeys_.insert(k).second)
        return fail(core::invalidArgument(what + " \"" + printable(k) +
                                          "\": appears in more than one of the data maps"));
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    std::string why = e.what();
    if (auto colon = why.rfind(": "); colon != std::string::npos) why = why.substr(colon + 2);
    // nlohmann quotes the bytes it last read as they are (DEL, part of a character): printable.
    return fail(core::invalidArgument("not valid JSON at byte " + std::to_string(position) + ": " +
                                      printable(why, 200)));
  }

 private:
  enum class Kind { kString, kObject, kArray, kNull, kOther };

  bool fail(core::Status s) {
    if (status_.isOk()) status_ = std::move(s);
    return false;
  }

  // The path of the value being read, as the messages name it: "spec.volumes[1].name".
  std::string path(size_t depth) const {
    std::string out;
    for (size_t i = 0; i < depth; ++i) {
      const Frame& f = frames_[i];
      if (f.array) {
        // Appended in parts: GCC 12's -Wrestrict misfires at -O2 on "literal" + std::string.
        out += '[';
        out += std::to_string(f.index);
        out += ']';
      } else {
        if (!out.empty()) out += '.';
        out += f.key;
      }
    }
    return out;
  }
  std::string path() const { return path(frames_.size()); }

  // Whether the value being read sits at `pattern` (see segmentMatches).
  bool at(std::initializer_list<std::string_view> pattern) const {
    if (pattern.size() != frames_.size()) return false;
    size_t i = 0;
    for (std::string_view p : pattern)
      if (!segmentMatches(p, frames_[i++])) return false;
    return true;
  }

  // Moves an array on to its next element once a value is complete.
  bool next() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
    return true;
  }

  // The members an object at the current path must have.
  unsigned need() const {
    if (type_ != "pod") return 0;
    if (at({"spec", "volumes", "#"})) return kNeedName;
    if (at({"spec", "initContainers|containers", "#"})) return kNeedName;
    if (at({"spec", "initContainers|containers", "#", "volumeMounts", "#"})) return kNeedName;
    if (at({"spec", "volumes", "#", "hostPath"})) return kNeedPath;
    if (at({"spec", "volumes", "#", "configMap|secret", "items", "#"})) return kNeedKey | kNeedPath;
    if (at({"spec", "volumes", "#", "downwardAPI", "items", "#"})) return kNeedPath;
    if (at({"spec", "volumes", "#", "projected", "sources", "#", "configMap|secret", "items", "#"}))
      return kNeedKey | kNeedPath;
    if (at({"spec", "volumes", "#", "projected", "sources", "#", "downwardAPI", "items", "#"}))
      return kNeedPath;
    if (at({"spec", "volumes", "#", "projected", "sources", "#", "serviceAccountToken"}))
      return kNeedPath;
    return 0;
  }

  core::Status mustBe(Kind want, Kind got, const char* noun) const {
    if (want == got) return core::okStatus();
    return core::invalidArgument(path() + ": must be " + noun);
  }

  bool value(Kind kind, std::string_view s) {
    if (frames_.empty()) {
      if (kind != Kind::kObject)
        return fail(core::invalidArgument("the object is not a JSON object"));
      return true;
    }
    if (at({"metadata", "uid"})) {
      if (kind == Kind::kString) facts_.uid = std::string(s);
      if (rules_) {
        if (auto st = mustBe(Kind::kString, kind, "a string"); !st.isOk()) return fail(st);
        if (auto st = uid("metadata.uid", s); !st.isOk()) return fail(st);
      }
    } else if (at({"metadata", "resourceVersion"})) {
      if (kind == Kind::kString) facts_.resourceVersion = std::string(s);
    }
    if (rules_ && relevant() && !check(kind, s)) return false;
    return kind == Kind::kObject || kind == Kind::kArray ? true : next();
  }

  // Whether any rule can apply at or below the current path: most of an object (a pod's env,
  // command, status) is passed by on this test alone.
  bool relevant() const {
    const std::string& top = frames_[0].key;
    if (frames_.size() == 1) return true;
    if (top == "metadata") return frames_.size() == 2;
    if (!dataMaps_.empty()) return frames_.size() == 2 && segmentMatches(dataMaps_, frames_[0]);
    if (type_ != "pod" || top != "spec") return false;
    const std::string& list = frames_[1].key;
    return list == "volumes" || list == "containers" || list == "initContainers";
  }

  // The rules at the path of one value; a container (object, array) is checked as it opens.
  bool check(Kind kind, std::string_view s) {
    auto string = [&](core::Status (*rule)(std::string_view, std::string_view)) {
      if (auto st = mustBe(Kind::kString, kind, "a string"); !st.isOk()) return fail(st);
      if (auto st = rule(path(), s); !st.isOk()) return fail(st);
      return true;
    };
    // An object or an array; null stands for an absent member.
    auto container = [&](Kind want, const char* noun) {
      if (kind == Kind::kNull) return true;
      if (auto st = mustBe(want, kind, noun); !st.isOk()) return fail(st);
      return true;
    };
    if (frames_.size() == 1) {
      const std::string& k = frames_[0].key;
      if (k == "kind") {
        if (auto st = mustBe(Kind::kString, kind, "a string"); !st.isOk()) return fail(st);
        std::string lower(s);
        for (char& c : lower)
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (lower != type_) {
          return fail(core::invalidArgument("kind \"" + printable(s) +
                                            "\": does not match the type \"" + std::string(type_) +
                                            "\" of its key"));
        }
        return true;
      }
      if (k == "metadata") {
        if (auto st = mustBe(Kind::kObject, kind, "an object"); !st.isOk()) return fail(st);
        return true;
      }
      if (!dataMaps_.empty() && at({dataMaps_})) return container(Kind::kObject, "an object");
      if (type_ == "pod" && k == "spec") return container(Kind::kObject, "an object");
      return true;
    }
    if (at({"metadata", "name"})) {
      if (kind != Kind::kString || s != name_) {
        return fail(core::invalidArgument("metadata.name: must be the name of its key, \"" +
                                          printable(name_) + "\""));
      }
      return true;
    }
    if (at({"metadata", "namespace"})) {
      if (kind == Kind::kNull || (kind == Kind::kString && (s.empty() || s == ns_))) return true;
      return fail(core::invalidArgument("metadata.namespace: must be the namespace of its key, \"" +
                                        printable(ns_) + "\""));
    }
    if (!dataMaps_.empty() && at({dataMaps_, "*"})) {
      if (kind != Kind::kString)
        return fail(core::invalidArgument(frames_[0].key + "." + printable(frames_[1].key) +
                                          ": must be a string"));
      return true;
    }
    if (type_ != "pod") return true;
    // A Pod: what becomes a host path or a file name.
    if (at({"spec", "volumes|initContainers|containers"}))
      return container(Kind::kArray, "an array");
    if (at({"spec", "volumes", "#"}) || at({"spec", "initContainers|containers", "#"}))
      return container(Kind::kObject, "an object");
    if (at({"spec", "volumes", "#", "name"})) {
      if (!string(dnsLabel)) return false;
      if (!volumeNames_.insert(std::string(s)).second)
        return fail(
            core::invalidArgument(path() + " \"" + printable(s) + "\": is used by another volume"));
      return true;
    }
    if (at({"spec", "initContainers|containers", "#", "name"})) {
      if (!string(dnsLabel)) return false;
      if (!containerNames_.insert(std::string(s)).second)
        return fail(core::invalidArgument(path() + " \"" + printable(s) +
                                          "\": is used by another container"));
      return true;
    }
    if (at({"spec", "volumes", "#", "hostPath", "path"})) return string(absolutePath);
    if (at({"spec", "volumes", "#", "configMap|secret", "items", "#", "key"}) ||
        at({"spec", "volumes", "#", "projected", "sources", "#", "configMap|secret", "items", "#",
            "key"}))
      return string(configKey);
    if (at({"spec", "volumes", "#", "configMap|secret|downwardAPI", "items", "#", "path"}) ||
        at({"spec", "volumes", "#", "projected", "sources", "#", "configMap|secret|downwardAPI",
            "items", "#", "path"}) ||
        at({"spec", "volumes", "#", "projected", "sources", "#", "serviceAccountToken", "path"}))
      return string(relativePath);
    if (at({"spec", "initContainers|containers", "#", "volumeMounts"}))
      return container(Kind::kArray, "an array");
    if (at({"spec", "initContainers|containers", "#", "volumeMounts", "#"}))
      return container(Kind::kObject, "an object");
    if (at({"spec", "initContainers|containers", "#", "volumeMounts", "#", "name"}))
      return string(dnsLabel);
    if (at({"spec", "initContainers|containers", "#", "volumeMounts", "#", "subPath"})) {
      if (kind == Kind::kString && s.empty()) return true;  // the whole volume
      return string(relativePath);
    }
    return true;
  }

  std::string_view ns_, type_, name_;
  bool rules_;
  std::string_view dataMaps_;  // a ConfigMap's or a Secret's maps of keys, as a pattern
  std::vector<Frame> frames_;
  std::set<std::string> dataKeys_, volumeNames_, containerNames_;
  ObjectFacts facts_;
  core::Status status_;
};

core::Result<ObjectFacts> run(std::string_view ns, std::string_view type, std::string_view name,
                              std::string_view object, bool rules) {
  OUTPOST_RETURN_IF_ERROR(jsonWithin(object));
  Checker checker(ns, type, name, rules);
  bool ok = json::sax_parse(object, &checker, json::input_format_t::json, /*strict=*/true);
  if (!checker.status().isOk()) return checker.status();
  if (!ok) return core::invalidArgument("the object is not valid JSON");
  return std::move(checker.facts());
}

}  // namespace

core::Result<ObjectFacts> desiredObject(std::string_view ns, std::string_view type,
                                        std::string_view name, std::string_view object) {
  OUTPOST_RETURN_IF_ERROR(desiredKey(ns, type, name));
  return run(ns, type, name, object, /*rules=*/true);
}

core::Result<ObjectFacts> objectFacts(std::string_view object) {
  return run({}, {}, {}, object, /*rules=*/false);
}

}  // namespace outpost::validation
