#include "sa_tokens.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "outpost/validation/validation.h"

namespace outpost::deploy {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr size_t kMaxToken = size_t{64} * 1024;
constexpr core::Duration kFirstRetry = std::chrono::seconds(2);
constexpr core::Duration kMaxRetry = std::chrono::minutes(1);

// RFC 3339 ("2026-12-06T19:00:00Z", fractions and offsets too) as a time; nullopt otherwise.
std::optional<core::WallTime> parseRfc3339(const std::string& s) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
      consumed != 19) {
    return std::nullopt;
  }
  if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60) {
    return std::nullopt;
  }
  std::string rest = s.substr(19);
  if (!rest.empty() && rest[0] == '.') {
    size_t digits = rest.find_first_not_of("0123456789", 1);
    if (digits == 1 || digits == std::string::npos) return std::nullopt;
    rest = rest.substr(digits);  // fractions of a second: the token is valid to the second before
  }
  int offset = 0;
  if (rest == "Z" || rest == "z") {
    offset = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int h = 0, m = 0;
    if (std::sscanf(rest.c_str() + 1, "%2d:%2d", &h, &m) != 2 || h > 23 || m > 59)
      return std::nullopt;
    offset = (rest[0] == '+' ? 1 : -1) * (h * 3600 + m * 60);
  } else {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm(&tm);
  return core::WallTime(seconds(static_cast<int64_t>(t) - offset));
}

int64_t unixSeconds(core::WallTime t) {
  return std::chrono::duration_cast<seconds>(t.time_since_epoch()).count();
}

}  // namespace

core::Result<ServiceAccountToken> parseTokenAnswer(const std::string& answer, int64_t askedSeconds,
                                                   core::WallTime now) {
  OUTPOST_RETURN_IF_ERROR(validation::jsonWithin(answer).withContext("the token answer"));
  json doc = json::parse(answer, nullptr, false);
  if (!doc.is_object() || !doc.contains("status") || !doc["status"].is_object())
    return core::invalidArgument("the token answer is not a TokenRequest with a status");
  const json& st = doc["status"];
  if (!st.contains("token") || !st["token"].is_string() || st["token"].get<std::string>().empty())
    return core::invalidArgument("the token answer's status.token is missing or empty");
  ServiceAccountToken t;
  t.token = st["token"].get<std::string>();
  if (t.token.size() > kMaxToken) {
    return core::invalidArgument("the token answer's status.token has " +
                                 std::to_string(t.token.size()) + " bytes, at most " +
                                 std::to_string(kMaxToken));
  }
  if (!std::all_of(t.token.begin(), t.token.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
    return core::invalidArgument("the token answer's status.token is not printable ASCII");
  std::string exp = st.contains("expirationTimestamp") && st["expirationTimestamp"].is_string()
                        ? st["expirationTimestamp"].get<std::string>()
                        : std::string();
  auto expires = parseRfc3339(exp);
  if (!expires) {
    return core::invalidArgument("the token answer's status.expirationTimestamp " +
                                 validation::printable(exp) + " is not an RFC 3339 time");
  }
  if (*expires <= now) {
    return core::invalidArgument("the token answer's status.expirationTimestamp " + exp +
                                 " has passed");
  }
  t.expires = *expires;
  int64_t lifetime = askedSeconds;
  if (doc.contains("spec") && doc["spec"].is_object()) {
    const json& e = doc["spec"].value("expirationSeconds", json());
    if (e.is_number_integer() && e.get<int64_t>() > 0 && e.get<int64_t>() <= (int64_t{1} << 32))
      lifetime = e.get<int64_t>();
  }
  t.issued = t.expires - seconds(lifetime);
  return t;
}

std::string tokenRequestJson(const PodSpec& pod, const ProjectionSource& source) {
  json audiences = source.audience.empty() ? json(nullptr) : json::array({source.audience});
  json tr = {{"kind", "TokenRequest"},
             {"apiVersion", "authentication.k8s.io/v1"},
             {"metadata", {{"name", pod.serviceAccount}, {"namespace", pod.podNamespace}}},
             {"spec",
              {{"audiences", audiences},
               {"expirationSeconds", source.expirationSeconds},
               {"boundObjectRef",
                {{"kind", "Pod"}, {"apiVersion", "v1"}, {"name", pod.name}, {"uid", pod.uid}}}}},
             {"status", {{"token", ""}, {"expirationTimestamp", nullptr}}}};
  return tr.dump();
}

core::WallTime refreshAt(const ServiceAccountToken& t) {
  auto lifetime = t.expires - t.issued;
  return std::min(t.issued + lifetime * 8 / 10, t.issued + std::chrono::hours(24));
}

ServiceAccountTokens::ServiceAccountTokens(TokenSource* source, core::EventLoop& loop,
                                           core::Logger log, Wake wake)
    : source_(source), loop_(loop), log_(std::move(log)), wake_(std::move(wake)) {}

core::MonoTime ServiceAccountTokens::monoAt(core::WallTime t) const {
  const core::Clock& clock = loop_.clock();
  return clock.now() + std::max<core::Duration>(t - clock.wallNow(), core::Duration::zero());
}

core::Result<std::string> ServiceAccountTokens::token(const PodSpec& pod, const std::string& volume,
                                                      const ProjectionSource& source) {
  if (!loaded_) load();
  std::string what = "service-account token of " + pod.podNamespace + "/" + pod.serviceAccount;
  if (!source_) return core::unavailable(what + ": this node has no source of tokens");
  std::string id = pod.uid + "/" + volume + "/" + source.path;
  std::string request =
      pod.serviceAccount + "|" + source.audience + "|" + std::to_string(source.expirationSeconds);
  auto now = loop_.clock().wallNow();
  auto it = held_.find(id);
  if (it != held_.end() && it->second.request == request && it->second.token.expires > now) {
    auto due = refreshAt(it->second.token);
    if (now >= due) {
      ask(pod, source, id, request);
    } else {
      wake_(pod.key, monoAt(due));
    }
    return it->second.token.token;
  }
  ask(pod, source, id, request);
  const Asking& a = asking_[id];
  return core::unavailable(
      what + " not obtained yet: " + (a.lastError.empty() ? "asked the cloud" : a.lastError));
}

void ServiceAccountTokens::ask(const PodSpec& pod, const ProjectionSource& source,
                               const std::string& id, const std::string& request) {
  Asking& a = asking_[id];
  if (a.inFlight) return;
  auto now = loop_.clock().now();
  if (now < a.nextTry) {
    wake_(pod.key, a.nextTry);
    return;
  }
  a.inFlight = true;
  std::weak_ptr<ServiceAccountTokens> weak = weak_from_this();
  core::EventLoop* loop = &loop_;
  source_->request(pod.podNamespace, pod.serviceAccount, tokenRequestJson(pod, source),
                   [weak, loop, id, request, key = pod.key, uid = pod.uid,
                    asked = source.expirationSeconds](core::Result<std::string> r) {
                     loop->post([weak, id, request, key, uid, asked, r = std::move(r)]() mutable {
                       if (auto self = weak.lock())
                         self->answered(id, key, uid, request, asked, std::move(r));
                     });
                   });
}

void ServiceAccountTokens::answered(const std::string& id, const std::string& podKey,
                                    const std::string& podUid, const std::string& request,
                                    int64_t askedSeconds, core::Result<std::string> r) {
  Asking& a = asking_[id];
  a.inFlight = false;
  core::Result<ServiceAccountToken> t =
      r ? parseTokenAnswer(*r, askedSeconds, loop_.clock().wallNow())
        : core::Result<ServiceAccountToken>(r.status());
  if (!t) {
    std::string why = t.status().message();
    if (why != a.lastError) log_.warn("pod ", podKey, ": no service-account token: ", why);
    a.lastError = why;
    // UNAVAILABLE: nothing reached the cloud (offline, no link yet); asked again soon, so the pod
    // starts right after the link comes up. What the cloud answered, or did not, backs off.
    bool offline = t.status().code() == core::Code::kUnavailable;
    if (offline) {
      a.backoff = core::Duration::zero();
    } else {
      a.backoff =
          a.backoff == core::Duration::zero() ? kFirstRetry : std::min(a.backoff * 2, kMaxRetry);
    }
    a.nextTry = loop_.clock().now() + (offline ? kFirstRetry : a.backoff);
    wake_(podKey, a.nextTry);
    return;
  }
  log_.info("pod ", podKey, ": service-account token obtained, valid until ",
            unixSeconds(t->expires), " (unix seconds)");
  asking_.erase(id);
  held_[id] = Held{std::move(t).value(), podUid, request};
  save();
  wake_(podKey, loop_.clock().now());
}

void ServiceAccountTokens::forget(const std::string& uid) {
  bool changed = false;
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second.podUid == uid) {
      it = held_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  std::erase_if(asking_, [&](const auto& e) { return e.first.starts_with(uid + "/"); });
  if (changed) save();
}

void ServiceAccountTokens::load() {
  loaded_ = true;
  if (!source_) return;
  std::string text = source_->load();
  if (text.empty()) return;
  json doc = validation::jsonWithin(text).isOk() ? json::parse(text, nullptr, false) : json();
  if (!doc.is_array()) {
    log_.warn("the saved service-account tokens are not a JSON array; they are asked again");
    return;
  }
  auto now = loop_.clock().wallNow();
  size_t expired = 0;
  for (const auto& e : doc) {
    if (!e.is_object() || !e.value("id", json()).is_string() ||
        !e.value("token", json()).is_string() || !e.value("expires", json()).is_number_integer() ||
        !e.value("issued", json()).is_number_integer())
      continue;
    Held h;
    h.token.token = e["token"].get<std::string>();
    h.token.expires = core::WallTime(seconds(e["expires"].get<int64_t>()));
    h.token.issued = core::WallTime(seconds(e["issued"].get<int64_t>()));
    h.podUid = e.value("podUid", "");
    h.request = e.value("request", "");
    if (h.token.expires <= now) {
      ++expired;
      continue;
    }
    held_[e["id"].get<std::string>()] = std::move(h);
  }
  log_.info("service-account tokens: ", held_.size(), " kept from before, ", expired,
            " expired dropped");
  if (expired > 0) save();
}

void ServiceAccountTokens::save() {
  json doc = json::array();
  auto now = loop_.clock().wallNow();
  for (const auto& [id, h] : held_) {
    if (h.token.expires <= now) continue;  // expired ones are not kept
    doc.push_back({{"id", id},
                   {"podUid", h.podUid},
                   {"request", h.request},
                   {"token", h.token.token},
                   {"expires", unixSeconds(h.token.expires)},
                   {"issued", unixSeconds(h.token.issued)}});
  }
  source_->save(doc.dump());
}

}  // namespace outpost::deploy
