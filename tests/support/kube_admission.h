#pragma once
// What the Kubernetes API server does to a pod and to a TokenRequest, for the CloudHub double:
// the ServiceAccount admission plugin's kube-api-access-<suffix> projected volume, and the token
// CloudCore gets from serviceaccounts/<name>/token for the edge (docs/kubeedge.md,
// "Service-account tokens").

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace outpost::test {

// `pod` as the API server stores it: spec.serviceAccountName (and serviceAccount) "default" when
// unset, and unless automountServiceAccountToken is false, the projected volume
// kube-api-access-<5 characters> (a serviceAccountToken of 3607 s at "token", kube-root-ca.crt's
// ca.crt, the namespace from the downward API, defaultMode 0644) mounted read-only at
// /var/run/secrets/kubernetes.io/serviceaccount in every container and init container. The suffix
// is derived from the pod's uid (else its name), so an update keeps it. A pod that already has such
// a volume, or an object without spec.containers, is returned as it is.
nlohmann::json admitPod(nlohmann::json pod);

// The API server's answer to a TokenRequest that CloudCore makes for the edge: nullopt and
// `error` ({"code", "reason", "message"}, as a Status) when it refuses (not a TokenRequest, an
// expirationSeconds under 600, a boundObjectRef that is not an existing pod with that uid — looked
// up with `podUid(namespace, name)` —, a service account that does not exist — `serviceAccount
// Exists(namespace, name)`). Else the TokenRequest with spec.expirationSeconds the lifetime granted
// (the one asked, capped at `maxExpiration` when set, as --service-account-max-token-expiration
// does) and status.token (a JWT-shaped string, unique per call: `serial`) and
// status.expirationTimestamp (RFC 3339, `now` + the lifetime).
std::optional<nlohmann::json> answerTokenRequest(
    const nlohmann::json& tokenRequest, const std::string& ns, const std::string& serviceAccount,
    const std::function<std::optional<std::string>(const std::string&, const std::string&)>& podUid,
    const std::function<bool(const std::string&, const std::string&)>& serviceAccountExists,
    std::optional<std::chrono::seconds> maxExpiration, std::chrono::system_clock::time_point now,
    int serial, nlohmann::json& error);

// The claims of a token answerTokenRequest made (its middle part, base64url-decoded); nullopt for
// anything else.
std::optional<nlohmann::json> tokenClaims(const std::string& token);

}  // namespace outpost::test
