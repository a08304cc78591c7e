// outpostctl logs POD [-c CONTAINER] [-f] [--tail N]: the container's CRI log files, found by
// asking the agent where its pod's logs are (/v1/pods/runtime), read and decoded here.

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "ctl_inspect.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/stream/cri_log.h"

namespace outpost::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using stream::CriLogDecoder;

// The newest attempt's log of a container: "<dir>/<n>.log" with the highest n.
std::optional<std::pair<long, fs::path>> newestLog(const fs::path& dir) {
  std::optional<std::pair<long, fs::path>> best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string stem = e.path().stem().string();
    if (e.path().extension() != ".log" || stem.empty() ||
        !std::all_of(stem.begin(), stem.end(), ::isdigit))
      continue;
    long n = std::stol(stem);
    if (!best || n > best->first) best = {n, e.path()};
  }
  return best;
}

// Reads what `in` has beyond its position into the decoder.
void drain(std::ifstream& in, CriLogDecoder& decoder, const CriLogDecoder::Emit& emit) {
  char buf[64 * 1024];
  in.clear();
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    decoder.feed(std::string_view(buf, static_cast<size_t>(in.gcount())), emit);
  }
  in.clear();
}

}  // namespace

int cmdLogs(const InspectOptions& o) {
  if (o.args.size() != 1) {
    std::cerr << "outpostctl: logs needs POD (and -c CONTAINER when it has several)\n";
    return kExitUsage;
  }
  const std::string& podName = o.args[0];
  json item;
  int rc = fetchObject(o, "pod", podName, item);
  if (rc != kExitOk) return rc;
  std::vector<std::string> names;
  const json spec = item["object"].value("spec", json::object());
  for (const char* list : {"initContainers", "containers"}) {
    for (const auto& c : spec.value(list, json::array())) names.push_back(c.value("name", ""));
  }
  auto list = [&] {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  };
  std::string container = o.container;
  if (container.empty()) {
    if (names.size() != 1) {
      std::cerr << "outpostctl: pod " << podName << " has " << names.size() << " containers ("
                << list() << "): choose one with -c CONTAINER\n";
      return kExitUsage;
    }
    container = names[0];
  } else if (std::find(names.begin(), names.end(), container) == names.end()) {
    std::cerr << "outpostctl: pod " << podName << " has no container \"" << container
              << "\"; its containers: " << list() << "\n";
    return kExitNotFound;
  }
  json runtime;
  rc = callAgent(o.socket, "GET",
                 "/v1/pods/runtime?namespace=" + urlEncode(o.ns) + "&name=" + urlEncode(podName),
                 "", runtime);
  if (rc != kExitOk) return rc;
  fs::path dir = fs::path(runtime.value("logDirectory", "")) / container;
  auto current = newestLog(dir);
  if (!current && !o.follow) {
    std::cerr << "outpostctl: container " << container << " of pod " << podName
              << " has no log yet (not created; see outpostctl describe pod " << podName << ")\n";
    return kExitNotFound;
  }
  std::deque<std::string> tail;
  bool tailing = o.tail >= 0;
  CriLogDecoder::Emit emit = [&](const stream::CriLogLine& entry) {
    std::string_view line = entry.text;
    if (tailing) {
      if (o.tail == 0) return;
      tail.emplace_back(line);
      if (static_cast<long>(tail.size()) > o.tail) tail.pop_front();
      return;
    }
    std::cout << line << '\n';
  };
  CriLogDecoder decoder;
  std::ifstream in;
  if (current) {
    in.open(current->second, std::ios::binary);
    if (!in) {
      std::cerr << "outpostctl: cannot read " << current->second.string() << ": "
                << std::strerror(errno) << "\n";
      return kExitFailure;
    }
    drain(in, decoder, emit);
  }
  if (!o.follow) decoder.flush(emit);
  if (tailing) {
    for (const auto& l : tail) std::cout << l << '\n';
    tailing = false;
  }
  std::cout.flush();
  if (!o.follow) return kExitOk;
  std::error_code dirEc;
  bool dirSeen = fs::exists(dir.parent_path(), dirEc);
  // Follow: the current file as it grows, and the next attempt's file when the container restarts,
  // until the pod's log directory goes (the pod was removed) or the reader goes (broken pipe).
  while (std::cout) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (current) {
      std::error_code ec;
      auto size = fs::file_size(current->second, ec);
      auto pos = in.tellg();
      if (!ec && pos > 0 && size < static_cast<uintmax_t>(pos)) {
        in.close();  // truncated: read it again from the start
        in.open(current->second, std::ios::binary);
      }
      drain(in, decoder, emit);
    }
    auto newest = newestLog(dir);
    if (newest && (!current || newest->first > current->first)) {
      if (current) drain(in, decoder, emit);
      decoder.flush(emit);
      current = newest;
      in.close();
      in.open(current->second, std::ios::binary);
      drain(in, decoder, emit);
    }
    std::cout.flush();
    std::error_code ec;
    bool exists = fs::exists(dir.parent_path(), ec);
    dirSeen = dirSeen || exists;
    if (dirSeen && !exists) {
      decoder.flush(emit);
      std::cerr << "outpostctl: pod " << podName << " was removed\n";
      return kExitOk;
    }
  }
  return kExitOk;
}

}  // namespace outpost::agent
