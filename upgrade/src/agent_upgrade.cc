#include "outpost/upgrade/agent_upgrade.h"

#include <cctype>
#include <nlohmann/json.hpp>

namespace outpost::upgrade {

namespace {

using nlohmann::json;

// A value for a message: quoted, control characters escaped, cut at 80 characters.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 80) out += "...";
  return out + "\"";
}

core::Status bad(std::string_view what, std::string_view value, std::string_view rule) {
  return core::invalidArgument(std::string(what) + " " + quoted(value) + ": " + std::string(rule));
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlnum(char c) { return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

core::Result<std::string> stringField(const json& o, const std::string& path, const char* name) {
  auto it = o.find(name);
  if (it == o.end()) return core::invalidArgument(path + "." + name + ": missing");
  if (!it->is_string()) return core::invalidArgument(path + "." + name + ": not a string");
  return it->get<std::string>();
}

core::Status checkToken(const std::string& what, const std::string& s) {
  if (s.empty() || s.size() > 32) return bad(what, s, "1 to 32 characters");
  for (char c : s)
    if (!(isAlnum(c) || c == '_')) return bad(what, s, "letters, digits and '_' only");
  return core::okStatus();
}

core::Result<Package> parsePackage(const json& p, const std::string& path) {
  if (!p.is_object()) return core::invalidArgument(path + ": not an object");
  Package out;
  OUTPOST_ASSIGN_OR_RETURN(out.format, stringField(p, path, "format"));
  if (out.format != "deb" && out.format != "rpm")
    return bad(path + ".format", out.format, "deb or rpm");
  OUTPOST_ASSIGN_OR_RETURN(out.arch, stringField(p, path, "arch"));
  OUTPOST_RETURN_IF_ERROR(checkToken(path + ".arch", out.arch));
  OUTPOST_ASSIGN_OR_RETURN(out.url, stringField(p, path, "url"));
  OUTPOST_RETURN_IF_ERROR(checkUrl(path + ".url", out.url));
  OUTPOST_ASSIGN_OR_RETURN(out.sha256, stringField(p, path, "sha256"));
  bool hex = out.sha256.size() == 64;
  for (char c : out.sha256) hex = hex && (isDigit(c) || (c >= 'a' && c <= 'f'));
  if (!hex) return bad(path + ".sha256", out.sha256, "64 lower-case hex digits");
  OUTPOST_ASSIGN_OR_RETURN(out.signature, stringField(p, path, "signature"));
  // An Ed25519 signature is 64 bytes: 88 base64 characters with padding.
  bool b64 = out.signature.size() == 88;
  for (char c : out.signature) b64 = b64 && (isAlnum(c) || c == '+' || c == '/' || c == '=');
  if (!b64) return bad(path + ".signature", out.signature, "base64 of a 64-byte Ed25519 signature");
  return out;
}

core::Result<PackageSet> parseSet(const json& o, const std::string& path) {
  if (!o.is_object()) return core::invalidArgument(path + ": not an object");
  PackageSet set;
  OUTPOST_ASSIGN_OR_RETURN(set.version, stringField(o, path, "version"));
  OUTPOST_RETURN_IF_ERROR(checkVersion(path + ".version", set.version));
  auto it = o.find("packages");
  if (it == o.end()) return core::invalidArgument(path + ".packages: missing");
  if (!it->is_array() || it->empty())
    return core::invalidArgument(path + ".packages: not a list of packages");
  if (it->size() > 64) return core::invalidArgument(path + ".packages: more than 64 packages");
  for (size_t i = 0; i < it->size(); ++i) {
    OUTPOST_ASSIGN_OR_RETURN(Package p,
                             parsePackage((*it)[i], path + ".packages[" + std::to_string(i) + "]"));
    for (const auto& q : set.packages) {
      if (q.format == p.format && q.arch == p.arch)
        return core::invalidArgument(path + ".packages[" + std::to_string(i) + "]: a second " +
                                     p.format + " package for " + p.arch);
    }
    set.packages.push_back(std::move(p));
  }
  return set;
}

}  // namespace

core::Status checkVersion(std::string_view what, std::string_view v) {
  constexpr std::string_view kRule =
      "a package version: an optional epoch (\"1:\"), then a digit, then letters, digits and "
      "\". + ~ _ -\", at most 64 characters";
  if (v.empty() || v.size() > kMaxVersion) return bad(what, v, kRule);
  size_t i = 0;
  if (auto colon = v.find(':'); colon != std::string_view::npos) {
    if (colon == 0 || colon > 9) return bad(what, v, kRule);
    for (; i < colon; ++i)
      if (!isDigit(v[i])) return bad(what, v, kRule);
    ++i;
  }
  if (i >= v.size() || !isDigit(v[i])) return bad(what, v, kRule);
  for (; i < v.size(); ++i) {
    char c = v[i];
    if (!(isAlnum(c) || c == '.' || c == '+' || c == '~' || c == '_' || c == '-'))
      return bad(what, v, kRule);
  }
  return core::okStatus();
}

core::Status checkUrl(std::string_view what, std::string_view url) {
  if (url.size() > kMaxUrl) return bad(what, url, "at most 2048 characters");
  std::string_view rest;
  if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return bad(what, url, "an http:// or https:// URL");
  }
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view path = end == std::string_view::npos ? "" : rest.substr(end);
  if (authority.find('@') != std::string_view::npos)
    return bad(what, url, "no user name or password in the URL");
  std::string_view host = authority, port;
  bool hasPort = false;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad(what, url, "an IPv6 address without ']'");
    host = authority.substr(1, close - 1);
    for (char c : host)
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'))
        return bad(what, url, "an IPv6 address of hex digits, ':' and '.'");
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad(what, url, "':' and a port after the IPv6 address");
      hasPort = true;
      port = after.substr(1);
    }
  } else {
    if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
      hasPort = true;
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    for (char c : host)
      if (!(isAlnum(c) || c == '-' || c == '.')) return bad(what, url, "a host name or address");
  }
  if (host.empty()) return bad(what, url, "no host");
  if (hasPort) {
    bool digits = !port.empty() && port.size() <= 5;
    for (char c : port) digits = digits && isDigit(c);
    if (!digits) return bad(what, url, "a port of 1 to 5 digits");
  }
  for (char c : path) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '\\' || c == '"' || c == '<' || c == '>' || c == '`' ||
        c == '{' || c == '}' || c == '|' || c == '^')
      return bad(what, url, "URL characters only in the path (no space or control character)");
  }
  return core::okStatus();
}

core::Result<AgentUpgrade> parseAgentUpgrade(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return core::invalidArgument("the AgentUpgrade is not a JSON object");
  if (auto kind = doc.find("kind"); kind != doc.end() && *kind != "AgentUpgrade")
    return core::invalidArgument("kind: not AgentUpgrade");
  auto spec = doc.find("spec");
  if (spec == doc.end() || !spec->is_object()) return core::invalidArgument("spec: missing");
  AgentUpgrade out;
  OUTPOST_ASSIGN_OR_RETURN(out.target, parseSet(*spec, "spec"));
  if (auto rb = spec->find("rollback"); rb != spec->end() && !rb->is_null()) {
    OUTPOST_ASSIGN_OR_RETURN(PackageSet set, parseSet(*rb, "spec.rollback"));
    out.rollback = std::move(set);
  }
  return out;
}

core::Result<Package> pickPackage(const PackageSet& set, std::string_view format,
                                  std::string_view arch) {
  std::string offered;
  for (const auto& p : set.packages) {
    if (p.format == format && p.arch == arch) return p;
    offered += (offered.empty() ? "" : ", ") + p.format + "/" + p.arch;
  }
  return core::notFound("no " + std::string(format) + " package for " + std::string(arch) +
                        " in version " + set.version + " (it has " + offered + ")");
}

}  // namespace outpost::upgrade
