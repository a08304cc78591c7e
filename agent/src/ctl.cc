// outpostctl: the operator's tool. Talks to the local agent over its unix socket
// (docs/local-api.md).

#include <CLI/CLI.hpp>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "outpost/agent/agent.h"
#include "outpost/agent/api_server.h"
#include "outpost/agent/config.h"
#include "outpost/agent/exit_codes.h"
#include "version.h"

namespace outpost::agent {

namespace {

struct Globals {
  std::string socket;
  std::string config = "/etc/outpost/outpost.yaml";
  std::string output = "table";
};

// --socket wins; else the agent's configuration names it; else the default path.
std::string socketPath(const Globals& g) {
  if (!g.socket.empty()) return g.socket;
  LoadResult loaded = loadConfigFile(g.config, processEnvironment());
  // Only api.socket matters here, so other problems in the file do not stop outpostctl.
  return loaded.config.api.socket;
}

std::string formatUptime(double seconds) {
  auto s = static_cast<long>(seconds);
  std::ostringstream out;
  if (s >= 86400) out << s / 86400 << "d";
  if (s >= 3600) out << (s % 86400) / 3600 << "h";
  if (s >= 60) out << (s % 3600) / 60 << "m";
  out << s % 60 << "s";
  return out.str();
}

int printStatus(const nlohmann::json& j, const std::string& output) {
  if (output == "json") {
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "Node:     " << j.value("node", "") << "\n"
            << "Version:  " << j.value("version", "") << " (outpostctl " << OUTPOST_VERSION << ")\n"
            << "Uptime:   " << formatUptime(j.value("uptime_seconds", 0.0)) << "\n"
            << "Ready:    " << (j.value("ready", false) ? "yes" : "no") << "\n\n";
  std::cout << std::left << std::setw(12) << "MODULE" << std::setw(10) << "STATE"
            << "DETAIL\n";
  for (const auto& m : j.value("modules", nlohmann::json::array())) {
    std::cout << std::left << std::setw(12) << m.value("name", "") << std::setw(10)
              << m.value("state", "") << m.value("detail", "") << "\n";
  }
  return kExitOk;
}

int cmdStatus(const Globals& g) {
  std::string path = socketPath(g);
  auto r = callUnixSocket(path, "GET", "/v1/status");
  if (!r.isOk()) {
    std::cerr << "outpostctl: " << r.status().message() << "\n"
              << "Is outpostd running? (systemctl status outpost; or pass --socket PATH)\n";
    return kExitUnavailable;
  }
  if (r->status != 200) {
    std::cerr << "outpostctl: the agent answered " << r->status << ": " << r->body << "\n";
    return kExitFailure;
  }
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "outpostctl: the agent's answer is not JSON: " << r->body << "\n";
    return kExitFailure;
  }
  return printStatus(j, g.output);
}

}  // namespace

int runCtl(int argc, char** argv) {
  CLI::App app{"outpostctl: inspect and drive the local Outpost agent", "outpostctl"};
  Globals g;
  app.add_option("--socket", g.socket,
                 "the agent's control socket (default: api.socket of --config)");
  app.add_option("-c,--config", g.config, "the agent's configuration, to find its socket")
      ->capture_default_str();
  app.set_version_flag("--version", std::string("outpostctl ") + OUTPOST_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  outpostctl status                 the agent's version, node, uptime and modules\n"
      "  outpostctl status -o json         the same as JSON, for scripts\n"
      "Exit codes: 0 ok, 1 the agent answered an error, 64 bad command line, 69 agent "
      "unreachable.");

  auto* status =
      app.add_subcommand("status", "show the agent's version, node, uptime and module states");
  status->add_option("-o,--output", g.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (status->parsed()) return cmdStatus(g);
  return kExitUsage;
}

}  // namespace outpost::agent
