#pragma once
// ServiceAccountTokens: the tokens of serviceAccountToken projections, as the kubelet's token
// manager keeps them. A token is asked of the cloud (TokenSource) with a TokenRequest bound to the
// pod, checked, held and saved (an offline restart uses an unexpired one), and asked again from
// 80 % of its lifetime (or 24 h) on; the pod is looked at again when an answer comes and when a
// refresh is due, so its file is rewritten while it runs. Lives on deploy's loop.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "outpost/core/clock.h"
#include "outpost/core/event_loop.h"
#include "outpost/core/log.h"
#include "outpost/core/status.h"
#include "outpost/deploy/ports.h"
#include "pod_spec.h"

namespace outpost::deploy {

// A token the cloud gave, checked.
struct ServiceAccountToken {
  std::string token;
  core::WallTime expires;
  core::WallTime issued;  // expires - the lifetime the cloud granted
};

// The cloud's answer to a TokenRequest, checked: a JSON object whose status.token is 1 to 64 KiB
// of printable ASCII without spaces and whose status.expirationTimestamp (RFC 3339) is after
// `now`. The lifetime is the answer's spec.expirationSeconds, else `askedSeconds`.
// INVALID_ARGUMENT naming the field otherwise.
core::Result<ServiceAccountToken> parseTokenAnswer(const std::string& answer, int64_t askedSeconds,
                                                   core::WallTime now);
// The TokenRequest (authentication.k8s.io/v1) the kubelet sends for `source` of `pod`.
std::string tokenRequestJson(const PodSpec& pod, const ProjectionSource& source);
// When a token should be asked again: at 80 % of its lifetime, or 24 h after it was issued.
core::WallTime refreshAt(const ServiceAccountToken& t);

class ServiceAccountTokens : public std::enable_shared_from_this<ServiceAccountTokens> {
 public:
  // `wake(podKey, at)`: look at the pod again at `at` (on the loop).
  using Wake = std::function<void(const std::string& podKey, core::MonoTime at)>;
  // `source` may be null: no token can then be had.
  ServiceAccountTokens(TokenSource* source, core::EventLoop& loop, core::Logger log, Wake wake);

  // On the loop. The token of `source` of `pod`'s volume `volume`: the one held while it has not
  // expired (asking for the next from its refresh time on), else UNAVAILABLE saying why, after
  // asking the cloud (at most one request in flight per token; after a failure, again after a
  // back-off from 2 s doubling to 1 min; every 2 s while TokenSource answers UNAVAILABLE, which
  // means nothing reached the cloud).
  core::Result<std::string> token(const PodSpec& pod, const std::string& volume,
                                  const ProjectionSource& source);
  // The pod with `uid` is gone: its tokens go too. On the loop.
  void forget(const std::string& uid);

 private:
  struct Held {
    ServiceAccountToken token;
    std::string podUid;
    std::string request;  // what was asked: a new spec asks again
  };
  struct Asking {
    bool inFlight = false;
    core::MonoTime nextTry{};
    core::Duration backoff{};
    std::string lastError;
  };
  void load();
  void save();
  void ask(const PodSpec& pod, const ProjectionSource& source, const std::string& id,
           const std::string& request);
  void answered(const std::string& id, const std::string& podKey, const std::string& podUid,
                const std::string& request, int64_t askedSeconds, core::Result<std::string> r);
  core::MonoTime monoAt(core::WallTime t) const;

  TokenSource* source_;
  core::EventLoop& loop_;
  core::Logger log_;
  Wake wake_;
  bool loaded_ = false;
  std::map<std::string, Held> held_;      // by <pod uid>/<volume>/<path>
  std::map<std::string, Asking> asking_;  // the same ids
};

}  // namespace outpost::deploy
