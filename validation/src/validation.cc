#include "outpost/validation/validation.h"

#include <algorithm>

#include "outpost/core/log.h"

namespace outpost::validation {
namespace {

bool lowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool alnum(char c) { return lowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

core::Status refuse(std::string_view what, std::string_view s, std::string_view rule) {
  std::string m;
  m.append(what).append(" \"").append(printable(s)).append("\": ").append(rule);
  return core::invalidArgument(std::move(m));
}

constexpr std::string_view kLabelRule =
    "must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a "
    "letter or digit, at most 63 characters)";
constexpr std::string_view kSubdomainRule =
    "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', starting and ending "
    "with a letter or digit, at most 253 characters)";

bool isLabel(std::string_view s) {
  if (s.empty() || s.size() > kMaxLabel) return false;
  if (!lowerAlnum(s.front()) || !lowerAlnum(s.back())) return false;
  for (char c : s)
    if (!lowerAlnum(c) && c != '-') return false;
  return true;
}

// A path's elements, split on '/', for the ".." rule.
bool hasDotDot(std::string_view s) {
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find('/', i);
    if (j == std::string_view::npos) j = s.size();
    if (s.substr(i, j - i) == "..") return true;
    i = j + 1;
  }
  return false;
}

}  // namespace

core::Status dnsLabel(std::string_view what, std::string_view s) {
  return isLabel(s) ? core::okStatus() : refuse(what, s, kLabelRule);
}

core::Status dnsSubdomain(std::string_view what, std::string_view s) {
  if (s.empty() || s.size() > kMaxSubdomain) return refuse(what, s, kSubdomainRule);
  size_t i = 0;
  while (true) {
    size_t j = s.find('.', i);
    if (j == std::string_view::npos) j = s.size();
    // Each part is a label; Kubernetes' 253 bound is on the whole name.
    std::string_view part = s.substr(i, j - i);
    if (part.empty() || !lowerAlnum(part.front()) || !lowerAlnum(part.back()))
      return refuse(what, s, kSubdomainRule);
    for (char c : part)
      if (!lowerAlnum(c) && c != '-') return refuse(what, s, kSubdomainRule);
    if (j == s.size()) return core::okStatus();
    i = j + 1;
  }
}

core::Status uid(std::string_view what, std::string_view s) {
  constexpr std::string_view rule =
      "must be a uid (a letter or digit, then letters, digits, '-', '_' or '.', at most 128 "
      "characters)";
  if (s.empty() || s.size() > kMaxUid || !alnum(s.front())) return refuse(what, s, rule);
  for (char c : s)
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return refuse(what, s, rule);
  return core::okStatus();
}

core::Status configKey(std::string_view what, std::string_view s) {
  constexpr std::string_view rule =
      "must be a key of letters, digits, '-', '_' and '.' (at most 253 characters, not '.' or "
      "'..')";
  if (s.empty() || s.size() > kMaxSubdomain || s == "." || s == "..") return refuse(what, s, rule);
  for (char c : s)
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return refuse(what, s, rule);
  return core::okStatus();
}

core::Status relativePath(std::string_view what, std::string_view s) {
  if (s.empty()) return refuse(what, s, "must not be empty");
  if (s.size() > 4096) return refuse(what, s, "is longer than 4096 bytes");
  if (s.find('\0') != std::string_view::npos) return refuse(what, s, "must not hold a NUL byte");
  if (s.front() == '/') return refuse(what, s, "must be a relative path");
  if (hasDotDot(s)) return refuse(what, s, "must not contain '..'");
  return core::okStatus();
}

core::Status absolutePath(std::string_view what, std::string_view s) {
  if (s.empty() || s.front() != '/') return refuse(what, s, "must be an absolute path");
  if (s.size() > 4096) return refuse(what, s, "is longer than 4096 bytes");
  if (s.find('\0') != std::string_view::npos) return refuse(what, s, "must not hold a NUL byte");
  if (hasDotDot(s)) return refuse(what, s, "must not contain '..'");
  return core::okStatus();
}

core::Status jsonWithin(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.maxBytes) {
    return core::invalidArgument("JSON of " + std::to_string(text.size()) +
                                 " bytes is over the limit of " + std::to_string(limits.maxBytes));
  }
  size_t depth = 0;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    char c = *p++;
    if (c == '"') {
      // Skip the string: to the next quote not escaped.
      while (p < end) {
        char d = *p++;
        if (d == '\\') {
          if (p < end) ++p;
        } else if (d == '"') {
          break;
        }
      }
    } else if (c == '[' || c == '{') {
      if (++depth > limits.maxDepth) {
        return core::invalidArgument("JSON nests deeper than " + std::to_string(limits.maxDepth) +
                                     " levels");
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return core::okStatus();
}

core::Status desiredKey(std::string_view ns, std::string_view type, std::string_view name) {
  if (!ns.empty()) OUTPOST_RETURN_IF_ERROR(dnsLabel("namespace", ns));
  if (type.empty() || type.size() > kMaxLabel)
    return refuse("type", type, "must be 1 to 63 lower-case letters and digits");
  for (char c : type)
    if (!lowerAlnum(c))
      return refuse("type", type, "must be 1 to 63 lower-case letters and digits");
  return dnsSubdomain("name", name);
}

namespace {

// The length of the well-formed UTF-8 sequence at s[i] (1 for ASCII), 0 when there is none there
// (a stray continuation byte, a truncated, overlong or surrogate sequence, a byte no UTF-8 has).
size_t utf8Length(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size() || at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) return 0;
  return n;
}

}  // namespace

std::string printable(std::string_view s, size_t max) {
  // Valid UTF-8 whatever `s` holds: a message quoting it may be serialised as JSON (an error
  // answer to the cloud), where nlohmann's dump() throws on a malformed byte. So the cut never
  // splits a character, and a byte that is not part of a well-formed character is escaped.
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t n = utf8Length(s, i);
    if (i + std::max<size_t>(n, 1) > max) break;
    if (n == 0) {
      auto c = static_cast<unsigned char>(s[i]);
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
    } else {
      out += core::escapeControl(s.substr(i, n));
      i += n;
    }
  }
  if (i < s.size()) out += "...";
  return out;
}

}  // namespace outpost::validation
