#include "process_metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

namespace outpost::agent {

namespace {

double residentBytes() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double virtualBytes() {
  std::ifstream f("/proc/self/statm");
  long pages = 0;
  f >> pages;
  return static_cast<double>(pages) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double cpuSeconds() {
  std::ifstream f("/proc/self/stat");
  std::string line;
  std::getline(f, line);
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoul(field);
    if (i == 15) stime = std::stoul(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double openFds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return 0;
  double n = 0;
  while (readdir(d)) ++n;
  closedir(d);
  return n - 3;  // ".", ".." and the directory's own descriptor
}

double threads() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stod(line.substr(8));
  }
  return 0;
}

}  // namespace

void registerProcessMetrics(core::MetricsRegistry& metrics) {
  double start =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  metrics.gaugeCallback("process_resident_memory_bytes", "Resident memory size in bytes.",
                        residentBytes);
  metrics.gaugeCallback("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                        virtualBytes);
  metrics.gaugeCallback("process_cpu_seconds_total", "User and system CPU time spent in seconds.",
                        cpuSeconds);
  metrics.gaugeCallback("process_open_fds", "Number of open file descriptors.", openFds);
  metrics.gaugeCallback("process_threads", "Number of threads.", threads);
  metrics.gaugeCallback("process_start_time_seconds",
                        "Start time of the process since the Unix epoch.",
                        [start] { return start; });
}

}  // namespace outpost::agent
