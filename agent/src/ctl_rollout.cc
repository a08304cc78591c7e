// outpostctl rollout (docs/rollouts.md): the controller runs in the foreground, holding the
// rollout's lease on the broker; every other command reads or asks through the broker.

#include "ctl_rollout.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "outpost/agent/config.h"
#include "outpost/agent/exit_codes.h"
#include "outpost/cloudhub/envelope.h"
#include "rollout/controller.h"
#include "rollout/mqtt_fleet.h"

namespace outpost::agent {

using namespace rollout;
using nlohmann::json;

namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

cloudhub::PublisherOptions publisherOptions(const RolloutFlags& f) {
  LoadResult loaded = loadConfigFile(f.config, processEnvironment());
  const Config& c = loaded.config;
  cloudhub::PublisherOptions o;
  o.broker = f.broker.empty() ? c.cloud.mqtt.broker : f.broker;
  o.prefix = f.prefix.empty() ? c.cloud.mqtt.prefix : f.prefix;
  o.encoding = cloudhub::parseEncoding(c.cloud.mqtt.encoding).value_or(cloudhub::Encoding::kJson);
  o.caFile = f.ca.empty() ? c.cloud.tls.ca : f.ca;
  o.certFile = f.cert.empty() ? c.cloud.tls.cert : f.cert;
  o.keyFile = f.key.empty() ? c.cloud.tls.key : f.key;
  o.username = c.cloud.mqtt.username;
  return o;
}

std::string holderId() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid()) + ":" +
         cloudhub::newMessageId().substr(0, 8);
}

int fail(const std::string& what, int code = kExitFailure) {
  std::cerr << "outpostctl rollout: " << what << "\n";
  return code;
}

std::string counts(const RolloutState& s, size_t wave) {
  std::map<NodeState, size_t> n;
  for (const auto& r : s.nodes) {
    if (r.wave == wave) ++n[r.state];
  }
  std::string out;
  for (const auto& [st, c] : n)
    out += (out.empty() ? "" : ", ") + std::to_string(c) + " " + nodeStateText(st);
  return out;
}

std::string strategyText(const Strategy& s) {
  std::ostringstream o;
  o << "canary " << s.canary.text() << ", waves";
  for (const auto& w : s.waves) o << " " << w.text();
  if (s.maxNodesPerMinute > 0) o << ", " << s.maxNodesPerMinute << " nodes/min";
  o << ", soak " << s.soakSeconds << " s, node timeout " << s.nodeTimeoutSeconds
    << " s, pre-pull timeout " << s.prePullTimeoutSeconds << " s, max failures "
    << s.maxFailuresPerWave.text() << " per wave / " << s.maxFailures.text()
    << " overall, on failure " << onFailureText(s.onFailure) << ", offline "
    << onOfflineText(s.onOffline) << ", held " << onHeldText(s.onHeld);
  return o.str();
}

void printState(const RolloutState& s, std::ostream& out) {
  out << "Rollout:  " << s.spec.name << " ("
      << (s.spec.target.group.empty() ? "selector" : "group " + s.spec.target.group) << ", "
      << s.nodes.size() << " nodes)\n";
  out << "Phase:    " << phaseText(s.phase);
  if (!s.reason.empty()) out << ": " << s.reason;
  if (!s.message.empty()) out << ": " << s.message;
  out << "\nStrategy: " << strategyText(s.spec.strategy) << "\n";
  out << "Objects: ";
  for (const auto& o : s.spec.objects) out << " " << o.key;
  out << "\n\n"
      << std::left << std::setw(6) << "WAVE" << std::setw(7) << "NODES"
      << "STATES\n";
  for (size_t w = 0; w < s.waves.size(); ++w) {
    std::string name = std::to_string(w) + (w == s.wave && !s.finished() ? "*" : "");
    out << std::left << std::setw(6) << name << std::setw(7) << s.waves[w].size << counts(s, w)
        << "\n";
  }
  bool header = false;
  for (const auto& n : s.nodes) {
    if (n.reason.empty() && (n.state == NodeState::kPending || n.state == NodeState::kHealthy))
      continue;
    if (!header) {
      out << "\n"
          << std::left << std::setw(24) << "NODE" << std::setw(6) << "WAVE" << std::setw(13)
          << "STATE"
          << "REASON\n";
      header = true;
    }
    out << std::left << std::setw(24) << n.name << std::setw(6) << n.wave << std::setw(13)
        << nodeStateText(n.state) << n.reason << (n.message.empty() ? "" : ": " + n.message)
        << "\n";
  }
}

struct Session {
  std::unique_ptr<MqttFleetView> view;
  std::string holder = holderId();
};

int connectView(const RolloutFlags& f, const std::string& name, Session& s) {
  auto o = publisherOptions(f);
  auto v = MqttFleetView::connect(o, name);
  if (!v.isOk())
    return fail("cannot reach the broker " + o.broker + ": " + v.status().message(),
                kExitUnavailable);
  s.view = std::move(v).value();
  return kExitOk;
}

core::Result<RolloutState> loadState(MqttFleetView& view, const std::string& name) {
  auto text = view.storedState();
  if (!text) return core::notFound("no rollout named " + name + " on the broker");
  return stateFromJson(*text);
}

int exitFor(const RolloutState& s) {
  if (s.phase == Phase::kSucceeded || s.phase == Phase::kUndone) return kExitOk;
  if (s.phase == Phase::kPaused && s.reason == "Paused") return kExitOk;
  return kExitFailure;
}

// Drives the rollout until it ends or pauses, renewing the lease; releases it at the end.
int drive(const RolloutFlags& f, Session& s, Controller& ctl) {
  const int64_t ttl = int64_t{f.leaseSeconds} * 1000;
  int64_t renewed = nowMs();
  std::string lastLine;
  auto step = std::chrono::milliseconds(static_cast<int64_t>(f.stepSeconds * 1000));
  std::vector<std::string> names;
  for (const auto& n : ctl.state().nodes) names.push_back(n.name);
  if (auto p = s.view->prefetchNodes(names); !p.isOk()) return fail(p.message(), kExitUnavailable);
  while (true) {
    int64_t now = nowMs();
    if (now - renewed > ttl / 3) {
      if (auto l = s.view->takeLease(s.holder, now, ttl); !l.isOk())
        return fail("stopped: " + l.message(), kExitBusy);
      renewed = now;
    }
    if (auto cmd = s.view->takeCommand()) {
      if (*cmd == "pause") ctl.pause("paused by outpostctl rollout pause");
      if (*cmd == "abort") (void)ctl.abort("aborted by outpostctl rollout abort");
    }
    auto st = ctl.step(now);
    if (!st.isOk()) std::cerr << "outpostctl rollout: " << st.message() << " (trying again)\n";
    const RolloutState& state = ctl.state();
    std::string line = phaseText(state.phase);
    if (state.wave < state.waves.size() && state.phase == Phase::kProgressing)
      line += ", wave " + std::to_string(state.wave) + " of " + std::to_string(state.waves.size()) +
              ": " + counts(state, state.wave);
    if (line != lastLine) {
      std::cout << line << std::endl;
      lastLine = line;
    }
    if (state.finished() || state.phase == Phase::kPaused) break;
    std::this_thread::sleep_for(step);
  }
  (void)s.view->releaseLease(s.holder);
  std::cout << "\n";
  printState(ctl.state(), std::cout);
  return exitFor(ctl.state());
}

int takeLease(const RolloutFlags& f, Session& s) {
  auto l = s.view->takeLease(s.holder, nowMs(), int64_t{f.leaseSeconds} * 1000);
  if (!l.isOk()) return fail(l.message(), kExitBusy);
  return kExitOk;
}

int cmdStart(const RolloutFlags& f) {
  std::ifstream in(f.file);
  if (!in) return fail("cannot read " + f.file);
  std::stringstream ss;
  ss << in.rdbuf();
  auto spec = parseRolloutFile(ss.str(), f.file);
  if (!spec.isOk()) return fail(spec.status().message());
  Session s;
  if (int rc = connectView(f, spec->name, s); rc != kExitOk) return rc;
  if (auto old = s.view->storedState()) {
    auto prior = stateFromJson(*old);
    if (prior.isOk() && !prior->finished())
      return fail("rollout " + spec->name + " is " + phaseText(prior->phase) +
                  ": resume or abort it first");
  }
  if (int rc = takeLease(f, s); rc != kExitOk) return rc;
  auto plan = planRollout(std::move(spec).value(), *s.view, nowMs());
  if (!plan.isOk()) {
    (void)s.view->releaseLease(s.holder);
    return fail(plan.status().message());
  }
  std::cout << "rollout " << plan->spec.name << ": " << plan->nodes.size() << " nodes in "
            << plan->waves.size() << " waves\n";
  Controller ctl(*s.view, std::move(plan).value());
  if (auto saved = ctl.save(nowMs()); !saved.isOk()) return fail(saved.message(), kExitUnavailable);
  return drive(f, s, ctl);
}

int cmdStatus(const RolloutFlags& f) {
  Session s;
  if (int rc = connectView(f, f.name, s); rc != kExitOk) return rc;
  auto text = s.view->storedState();
  if (!text) return fail("no rollout named " + f.name + " on the broker", kExitNotFound);
  if (f.output == "json") {
    json j = json::parse(*text, nullptr, false);
    std::cout << (j.is_discarded() ? *text : j.dump(2)) << "\n";
    return kExitOk;
  }
  auto state = stateFromJson(*text);
  if (!state.isOk()) return fail(state.status().message());
  printState(*state, std::cout);
  if (auto l = s.view->lease(); l && l->expiresAt > nowMs())
    std::cout << "\nDriven by " << l->holder << "\n";
  return kExitOk;
}

// pause, abort: through the controller that drives it, else here.
int cmdRequest(const RolloutFlags& f, const std::string& action) {
  Session s;
  if (int rc = connectView(f, f.name, s); rc != kExitOk) return rc;
  auto state = loadState(*s.view, f.name);
  if (!state.isOk()) return fail(state.status().message(), kExitNotFound);
  auto l = s.view->lease();
  if (l && l->expiresAt > nowMs() && l->holder != s.holder) {
    if (auto sent = s.view->sendCommand(action); !sent.isOk())
      return fail(sent.message(), kExitUnavailable);
    std::cout << "asked " << l->holder << " to " << action << "\n";
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      auto now = loadState(*s.view, f.name);
      if (now.isOk() && (now->finished() || now->phase == Phase::kPaused)) {
        printState(*now, std::cout);
        return kExitOk;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return fail("the controller did not act within 30 s", kExitUnavailable);
  }
  if (int rc = takeLease(f, s); rc != kExitOk) return rc;
  Controller ctl(*s.view, std::move(state).value());
  if (action == "pause") {
    ctl.pause("paused by outpostctl rollout pause");
  } else if (auto a = ctl.abort("aborted by outpostctl rollout abort"); !a.isOk()) {
    (void)s.view->releaseLease(s.holder);
    return fail(a.message());
  }
  return drive(f, s, ctl);
}

// resume, undo: the stored rollout, driven from here (its lease taken). kExitOk with `state` set,
// or the exit code.
int openToDrive(const RolloutFlags& f, Session& s, std::optional<RolloutState>& state) {
  if (int rc = connectView(f, f.name, s); rc != kExitOk) return rc;
  auto loaded = loadState(*s.view, f.name);
  if (!loaded.isOk()) return fail(loaded.status().message(), kExitNotFound);
  if (int rc = takeLease(f, s); rc != kExitOk) return rc;
  state = std::move(loaded).value();
  return kExitOk;
}

int cmdResume(const RolloutFlags& f) {
  Session s;
  std::optional<RolloutState> state;
  if (int rc = openToDrive(f, s, state); rc != kExitOk) return rc;
  Controller ctl(*s.view, std::move(*state));
  if (auto r = ctl.resume(); !r.isOk()) {
    (void)s.view->releaseLease(s.holder);
    return fail(r.message());
  }
  return drive(f, s, ctl);
}

int cmdUndo(const RolloutFlags& f) {
  Session s;
  std::optional<RolloutState> state;
  if (int rc = openToDrive(f, s, state); rc != kExitOk) return rc;
  Controller ctl(*s.view, std::move(*state));
  bool running = !ctl.state().finished();
  auto u = ctl.undo(nowMs());
  if (!u.isOk()) {
    (void)s.view->releaseLease(s.holder);
    return fail(u.message());
  }
  if (running) return drive(f, s, ctl);
  (void)s.view->releaseLease(s.holder);
  printState(ctl.state(), std::cout);
  return kExitOk;
}

}  // namespace

CLI::App* addRolloutCommand(CLI::App& app, RolloutFlags& f) {
  auto* r =
      app.add_subcommand("rollout", "roll objects out to a group in waves (docs/rollouts.md)");
  r->require_subcommand(1);
  auto broker = [&](CLI::App* c) {
    c->add_option("--broker", f.broker, "broker URI (default: cloud.mqtt.broker of --config)");
    c->add_option("--prefix", f.prefix, "topic prefix (default: cloud.mqtt.prefix)");
    c->add_option("--ca", f.ca, "CA file for ssl:// and wss:// (default: cloud.tls.ca)");
    c->add_option("--cert", f.cert, "client certificate (default: cloud.tls.cert)");
    c->add_option("--key", f.key, "client key (default: cloud.tls.key)");
  };
  auto driving = [&](CLI::App* c) {
    c->add_option("--lease-seconds", f.leaseSeconds,
                  "how long the lease lasts without renewal (renewed every third of it)")
        ->check(CLI::Range(3, 3600))
        ->capture_default_str();
  };
  auto* start = r->add_subcommand("start", "start a rollout and drive it to its end");
  start->add_option("-f,--filename", f.file, "the rollout file")->required();
  broker(start);
  driving(start);
  auto* status = r->add_subcommand("status", "per wave and per node, and why it stopped");
  status->add_option("name", f.name, "the rollout")->required();
  status->add_option("-o,--output", f.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  broker(status);
  for (const char* n : {"pause", "resume", "abort", "undo"}) {
    auto* c = r->add_subcommand(n, std::string(n) == "pause"    ? "stop switching nodes"
                                   : std::string(n) == "resume" ? "go on (after a pause or a "
                                                                  "controller that vanished)"
                                   : std::string(n) == "abort"  ? "roll back every touched node"
                                                                : "back to the objects before a "
                                                                  "finished rollout");
    c->add_option("name", f.name, "the rollout")->required();
    broker(c);
    driving(c);
  }
  r->footer(
      "Examples:\n"
      "  outpostctl rollout start -f web-v2.yaml      plan, then drive wave by wave\n"
      "  outpostctl rollout status web-v2             from any machine\n"
      "  outpostctl rollout pause web-v2              asks the controller that drives it\n"
      "  outpostctl rollout resume web-v2             drive it from here (after a pause or a "
      "crash)\n"
      "  outpostctl rollout abort web-v2              roll back every touched node\n"
      "  outpostctl rollout undo web-v2               the group's objects from before\n"
      "Exit codes: 0 done, 1 rolled back or failed, 2 no such rollout, 64 bad command line, 69 "
      "broker unreachable, 75 another controller drives it.");
  return r;
}

int runRolloutCommand(CLI::App& r, RolloutFlags& f) {
  if (r.get_subcommand("start")->parsed()) return cmdStart(f);
  if (r.get_subcommand("status")->parsed()) return cmdStatus(f);
  if (r.get_subcommand("pause")->parsed()) return cmdRequest(f, "pause");
  if (r.get_subcommand("abort")->parsed()) return cmdRequest(f, "abort");
  if (r.get_subcommand("resume")->parsed()) return cmdResume(f);
  if (r.get_subcommand("undo")->parsed()) return cmdUndo(f);
  return kExitUsage;
}

}  // namespace outpost::agent
