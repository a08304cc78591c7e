#include "outpost/twin/rules.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

namespace outpost::twin {

namespace {

bool allowedChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '_':
    case '.':
    case ',':
    case ':':
    case '/':
    case '@':
    case '#':
      return true;
    default:
      return false;
  }
}

bool allAllowed(std::string_view s) {
  for (char c : s) {
    if (!allowedChar(c)) return false;
  }
  return true;
}

}  // namespace

bool validPropertyName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxPropertyName && allAllowed(name);
}

bool validPropertyValue(std::string_view value, size_t maxBytes) {
  return value.size() <= maxBytes && allAllowed(value);
}

bool validPropertyChars(std::string_view value) { return allAllowed(value); }

bool validType(std::string_view type) {
  return type == "string" || type == "int" || type == "integer" || type == "float" ||
         type == "boolean";
}

bool valueMatchesType(std::string_view value, std::string_view type) {
  if (type == "string") return true;
  if (type == "int" || type == "integer") {
    std::string_view digits = value;
    if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);  // as Go's ParseInt
    if (digits.empty() || digits.front() == '+') return false;
    int64_t v = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    return ec == std::errc() && end == digits.data() + digits.size();
  }
  if (type == "float") {
    if (value.empty()) return false;
    std::string copy(value);
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(copy.c_str(), &end);
    return end == copy.c_str() + copy.size() && errno != ERANGE && std::isfinite(v);
  }
  if (type == "boolean") {
    for (std::string_view ok :
         {"1", "t", "T", "true", "TRUE", "True", "0", "f", "F", "false", "FALSE", "False"}) {
      if (value == ok) return true;
    }
    return false;
  }
  return false;
}

CloudVerdict decideCloudUpdate(const metadb::VersionVector& stored,
                               const std::optional<metadb::VersionVector>& incoming) {
  if (!incoming) return CloudVerdict::kReject;
  if (incoming->cloud < stored.cloud || incoming->edge < stored.edge) return CloudVerdict::kReject;
  return CloudVerdict::kAccept;
}

}  // namespace outpost::twin
