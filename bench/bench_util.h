#pragma once
// What every benchmark reports alike (../shared/design/BENCHMARKS.md: the raw samples behind each
// median, min and max, and the machine): the statistics and the CPU model.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace outpost::bench {

// The middle sample (the mean of the two middle ones for an even count); 0 for none.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The nearest-rank percentile, `p` in percent (50 = p50, 99 = p99); 0 for no samples.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// {"median", "min", "max", "samples"} of one value per repetition.
inline nlohmann::json summary(const std::vector<double>& samples) {
  if (samples.empty()) return {{"median", 0}, {"min", 0}, {"max", 0}, {"samples", samples}};
  return {{"median", median(samples)},
          {"min", *std::min_element(samples.begin(), samples.end())},
          {"max", *std::max_element(samples.begin(), samples.end())},
          {"samples", samples}};
}

// The CPU model from /proc/cpuinfo ("unknown" when it has none).
inline std::string cpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

}  // namespace outpost::bench
