#pragma once
// Metrics: counters, gauges and histograms in one registry that renders the Prometheus text format.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace outpost::core {

using Labels = std::vector<std::pair<std::string, std::string>>;

// The Prometheus text format's pieces, for text rendered outside the registry (the stream tunnel's
// kubelet resource metrics): a sample value (shortest text that reads back the same; NaN, +Inf,
// -Inf) and a label value escaped (backslash, double quote, newline).
std::string formatNumber(double v);
std::string escapeLabel(const std::string& v);

// A value that only goes up (messages sent, reconnects).
class Counter {
 public:
  void inc(double by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down (outbox depth, link state).
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  void dec(double by = 1) { value_.fetch_sub(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into cumulative buckets by upper bound (commit latency in seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upperBounds);
  void observe(double v);
  // Per-bucket cumulative counts (one per bound, then +Inf), the sum and the count, read together.
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Buckets for latencies in seconds, from 100 µs to 10 s.
std::vector<double> latencyBuckets();

// Owns every metric of the process. Made once by main and passed by reference; metrics live as long
// as the registry, so modules keep plain references to them.
class MetricsRegistry {
 public:
  // The same name and labels give the same metric. A name is one type only.
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help,
                       std::vector<double> upperBounds, const Labels& labels = {});
  // A gauge read when rendered (process memory, open files).
  void gaugeCallback(const std::string& name, const std::string& help, std::function<double()> read,
                     const Labels& labels = {});

  // The Prometheus text exposition format, version 0.0.4.
  std::string render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> read;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<Series> series;
  };
  Series& series(const std::string& name, const std::string& help, Type type, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace outpost::core
