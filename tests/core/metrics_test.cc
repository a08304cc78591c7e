#include "outpost/core/metrics.h"

#include <doctest/doctest.h>

using namespace outpost::core;

TEST_CASE("the registry renders counters, gauges and histograms in the Prometheus text format") {
  MetricsRegistry reg;
  reg.counter("outpost_messages_received_total", "Messages received from the cloud.",
              {{"transport", "mqtt"}})
      .inc(3);
  reg.gauge("outpost_outbox_rows", "Rows waiting in the outbox.").set(7);
  auto& h = reg.histogram("outpost_commit_seconds", "Store commit latency.", {0.001, 0.01});
  h.observe(0.0005);
  h.observe(0.005);
  h.observe(2);
  reg.gaugeCallback("outpost_open_fds", "Open file descriptors.", [] { return 12.0; });

  std::string text = reg.render();
  CHECK(text.find("# HELP outpost_messages_received_total Messages received from the cloud.\n") !=
        std::string::npos);
  CHECK(text.find("# TYPE outpost_messages_received_total counter\n") != std::string::npos);
  CHECK(text.find("outpost_messages_received_total{transport=\"mqtt\"} 3\n") != std::string::npos);
  CHECK(text.find("# TYPE outpost_outbox_rows gauge\noutpost_outbox_rows 7\n") !=
        std::string::npos);
  CHECK(text.find("outpost_commit_seconds_bucket{le=\"0.001\"} 1\n") != std::string::npos);
  CHECK(text.find("outpost_commit_seconds_bucket{le=\"0.01\"} 2\n") != std::string::npos);
  CHECK(text.find("outpost_commit_seconds_bucket{le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("outpost_commit_seconds_count 3\n") != std::string::npos);
  CHECK(text.find("outpost_commit_seconds_sum 2.0055\n") != std::string::npos);
  CHECK(text.find("outpost_open_fds 12\n") != std::string::npos);
}

TEST_CASE("the same name and labels give the same metric; other labels give another series") {
  MetricsRegistry reg;
  auto& a = reg.counter("x_total", "x", {{"k", "1"}});
  auto& b = reg.counter("x_total", "x", {{"k", "1"}});
  auto& c = reg.counter("x_total", "x", {{"k", "2"}});
  CHECK(&a == &b);
  CHECK(&a != &c);
  a.inc();
  b.inc();
  CHECK(a.value() == 2);
  CHECK(c.value() == 0);
  std::string text = reg.render();
  CHECK(text.find("# TYPE x_total counter") == text.rfind("# TYPE x_total counter"));
}

TEST_CASE("label values are escaped") {
  MetricsRegistry reg;
  reg.gauge("g", "h", {{"path", "a\"b\\c\nd"}}).set(1);
  CHECK(reg.render().find("g{path=\"a\\\"b\\\\c\\nd\"} 1\n") != std::string::npos);
}
