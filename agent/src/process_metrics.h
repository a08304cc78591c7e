#pragma once
// Process metrics in the conventional names (process_*), read from /proc when scraped.

#include "outpost/core/metrics.h"

namespace outpost::agent {
void registerProcessMetrics(core::MetricsRegistry& metrics);
}
