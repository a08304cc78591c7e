#include "labels.h"

#include <algorithm>

namespace outpost::deploy {

std::string labelValue(const std::string& key) {
  std::string out = key;
  std::replace(out.begin(), out.end(), '/', '.');
  return out;
}

std::optional<std::string> keyFromLabel(const std::string& value) {
  auto dot = value.find('.');
  if (dot == std::string::npos || dot == 0 || value.compare(dot, 5, ".pod.") != 0 ||
      value.size() <= dot + 5)
    return std::nullopt;
  return value.substr(0, dot) + "/pod/" + value.substr(dot + 5);
}

}  // namespace outpost::deploy
