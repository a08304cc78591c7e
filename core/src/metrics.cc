#include "outpost/core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "outpost/core/check.h"

namespace outpost::core {

std::string formatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back the same
  return std::string(buf, res.ptr);
}

std::string escapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

std::string escapeHelp(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string labelText(const Labels& labels,
                      const std::pair<std::string, std::string>* extra = nullptr) {
  if (labels.empty() && !extra) return "";
  std::string out = "{";
  bool first = true;
  auto add = [&](const std::pair<std::string, std::string>& l) {
    if (!first) out += ",";
    first = false;
    out += l.first + "=\"" + escapeLabel(l.second) + "\"";
  };
  for (const auto& l : labels) add(l);
  if (extra) add(*extra);
  out += "}";
  return out;
}

}  // namespace

Histogram::Histogram(std::vector<double> upperBounds)
    : bounds_(std::move(upperBounds)), counts_(bounds_.size() + 1, 0) {
  OUTPOST_CHECK(std::is_sorted(bounds_.begin(), bounds_.end()), "histogram bounds must be sorted");
}

void Histogram::observe(double v) {
  auto idx =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  std::lock_guard lock(mu_);
  counts_[idx]++;
  sum_ += v;
  count_++;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  std::lock_guard lock(mu_);
  uint64_t running = 0;
  for (auto c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> latencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

MetricsRegistry::Series& MetricsRegistry::series(const std::string& name, const std::string& help,
                                                 Type type, const Labels& labels) {
  auto [it, inserted] = families_.try_emplace(name, Family{type, help, {}});
  OUTPOST_CHECK(it->second.type == type, "a metric name is one type only: ", name);
  for (auto& s : it->second.series) {
    if (s.labels == labels) return s;
  }
  it->second.series.push_back(Series{labels, nullptr, nullptr, nullptr, nullptr});
  return it->second.series.back();
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                  const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& s = series(name, help, Type::kCounter, labels);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                              const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& s = series(name, help, Type::kGauge, labels);
  if (!s.gauge) s.gauge = std::make_unique<Gauge>();
  return *s.gauge;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      std::vector<double> upperBounds, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& s = series(name, help, Type::kHistogram, labels);
  if (!s.histogram) s.histogram = std::make_unique<Histogram>(std::move(upperBounds));
  return *s.histogram;
}

void MetricsRegistry::gaugeCallback(const std::string& name, const std::string& help,
                                    std::function<double()> read, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& s = series(name, help, Type::kGauge, labels);
  s.read = std::move(read);
}

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    const char* type = family.type == Type::kCounter ? "counter"
                       : family.type == Type::kGauge ? "gauge"
                                                     : "histogram";
    out += "# HELP " + name + " " + escapeHelp(family.help) + "\n";
    out += "# TYPE " + name + " " + type + "\n";
    for (const auto& s : family.series) {
      if (s.counter) {
        out += name + labelText(s.labels) + " " + formatNumber(s.counter->value()) + "\n";
      } else if (s.read) {
        out += name + labelText(s.labels) + " " + formatNumber(s.read()) + "\n";
      } else if (s.gauge) {
        out += name + labelText(s.labels) + " " + formatNumber(s.gauge->value()) + "\n";
      } else if (s.histogram) {
        auto snap = s.histogram->snapshot();
        for (size_t i = 0; i <= snap.bounds.size(); ++i) {
          std::pair<std::string, std::string> le{
              "le", i < snap.bounds.size() ? formatNumber(snap.bounds[i]) : "+Inf"};
          out += name + "_bucket" + labelText(s.labels, &le) + " " +
                 formatNumber(static_cast<double>(snap.cumulative[i])) + "\n";
        }
        out += name + "_sum" + labelText(s.labels) + " " + formatNumber(snap.sum) + "\n";
        out += name + "_count" + labelText(s.labels) + " " +
               formatNumber(static_cast<double>(snap.count)) + "\n";
      }
    }
  }
  return out;
}

}  // namespace outpost::core
