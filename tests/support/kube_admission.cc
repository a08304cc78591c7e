#include "support/kube_admission.h"

#include <ctime>
#include <functional>

namespace outpost::test {
namespace {

using nlohmann::json;

// The alphabet of the API server's generated name suffixes (no vowels, no look-alikes).
constexpr const char* kSuffixChars = "bcdfghjklmnpqrstvwxz2456789";

std::string suffixFor(const std::string& seed) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : seed) h = (h ^ c) * 1099511628211ull;
  std::string out;
  for (int i = 0; i < 5; ++i) {
    out.push_back(kSuffixChars[h % 27]);
    h /= 27;
  }
  return out;
}

std::string base64Url(const std::string& in) {
  static const char* kChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t val = 0;
  int bits = 0;
  for (unsigned char c : in) {
    val = (val << 8) | c;
    bits += 8;
    while (bits >= 6) {
      out.push_back(kChars[(val >> (bits - 6)) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > 0) out.push_back(kChars[(val << (6 - bits)) & 0x3F]);
  return out;
}

std::string base64UrlDecode(const std::string& in) {
  static const std::string kChars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t val = 0;
  int bits = 0;
  for (char c : in) {
    auto pos = kChars.find(c);
    if (pos == std::string::npos) return "";
    val = (val << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      out.push_back(static_cast<char>((val >> (bits - 8)) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  std::time_t s = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json status(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},   {"apiVersion", "v1"}, {"status", "Failure"},
          {"message", message}, {"reason", reason},   {"code", code}};
}

}  // namespace

json admitPod(json pod) {
  if (!pod.is_object() || !pod.contains("spec") || !pod["spec"].is_object() ||
      !pod["spec"].contains("containers")) {
    return pod;
  }
  json& spec = pod["spec"];
  if (!spec.contains("serviceAccountName")) spec["serviceAccountName"] = "default";
  if (!spec.contains("serviceAccount")) spec["serviceAccount"] = spec["serviceAccountName"];
  if (spec.value("automountServiceAccountToken", true) == false) return pod;
  if (!spec.contains("volumes") || !spec["volumes"].is_array()) spec["volumes"] = json::array();
  for (const auto& v : spec["volumes"])
    if (v.is_object() && v.value("name", "").starts_with("kube-api-access-")) return pod;
  const json& md = pod.value("metadata", json::object());
  std::string name = "kube-api-access-" + suffixFor(md.value("uid", md.value("name", "")));
  spec["volumes"].push_back(
      {{"name", name},
       {"projected",
        {{"defaultMode", 420},
         {"sources",
          {{{"serviceAccountToken", {{"expirationSeconds", 3607}, {"path", "token"}}}},
           {{"configMap",
             {{"name", "kube-root-ca.crt"}, {"items", {{{"key", "ca.crt"}, {"path", "ca.crt"}}}}}}},
           {{"downwardAPI",
             {{"items",
               {{{"path", "namespace"},
                 {"fieldRef",
                  {{"apiVersion", "v1"}, {"fieldPath", "metadata.namespace"}}}}}}}}}}}}}});
  for (const char* list : {"initContainers", "containers"}) {
    if (!spec.contains(list) || !spec[list].is_array()) continue;
    for (auto& c : spec[list]) {
      if (!c.is_object()) continue;
      if (!c.contains("volumeMounts") || !c["volumeMounts"].is_array())
        c["volumeMounts"] = json::array();
      c["volumeMounts"].push_back({{"name", name},
                                   {"readOnly", true},
                                   {"mountPath", "/var/run/secrets/kubernetes.io/serviceaccount"}});
    }
  }
  return pod;
}

std::optional<json> answerTokenRequest(
    const json& tokenRequest, const std::string& ns, const std::string& serviceAccount,
    const std::function<std::optional<std::string>(const std::string&, const std::string&)>& podUid,
    const std::function<bool(const std::string&, const std::string&)>& serviceAccountExists,
    std::optional<std::chrono::seconds> maxExpiration, std::chrono::system_clock::time_point now,
    int serial, json& error) {
  if (!tokenRequest.is_object() || !tokenRequest.contains("spec") ||
      !tokenRequest["spec"].is_object()) {
    error = status(400, "BadRequest", "the content is not a TokenRequest");
    return std::nullopt;
  }
  if (!serviceAccountExists(ns, serviceAccount)) {
    error = status(404, "NotFound", "serviceaccounts \"" + serviceAccount + "\" not found");
    return std::nullopt;
  }
  const json& spec = tokenRequest["spec"];
  int64_t asked = spec.value("expirationSeconds", json(3600)).is_number_integer()
                      ? spec.value("expirationSeconds", json(3600)).get<int64_t>()
                      : -1;
  if (asked < 600) {
    error = status(400, "BadRequest",
                   "TokenRequest.authentication.k8s.io \"" + serviceAccount +
                       "\" is invalid: spec.expirationSeconds: may not specify a duration less "
                       "than 10 minutes");
    return std::nullopt;
  }
  const json& ref = spec.value("boundObjectRef", json());
  std::string podName = ref.is_object() ? ref.value("name", "") : "";
  std::string uid = ref.is_object() ? ref.value("uid", "") : "";
  if (!ref.is_object() || ref.value("kind", "") != "Pod") {
    error =
        status(400, "BadRequest", "the edge binds a token to its pod (boundObjectRef kind Pod)");
    return std::nullopt;
  }
  auto have = podUid(ns, podName);
  if (!have) {
    error = status(404, "NotFound", "pods \"" + podName + "\" not found");
    return std::nullopt;
  }
  if (*have != uid) {
    error = status(409, "Conflict",
                   "the UID in the bound object reference (" + uid +
                       ") does not match the UID in record. The object might have been deleted "
                       "and then recreated");
    return std::nullopt;
  }
  int64_t granted = maxExpiration ? std::min<int64_t>(asked, maxExpiration->count()) : asked;
  auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  json claims = {{"aud", spec.value("audiences", json()).is_array()
                             ? spec["audiences"]
                             : json::array({"https://kubernetes.default.svc.cluster.local"})},
                 {"exp", iat + granted},
                 {"iat", iat},
                 {"jti", std::to_string(serial)},
                 {"iss", "https://kubernetes.default.svc.cluster.local"},
                 {"sub", "system:serviceaccount:" + ns + ":" + serviceAccount},
                 {"kubernetes.io",
                  {{"namespace", ns},
                   {"pod", {{"name", podName}, {"uid", uid}}},
                   {"serviceaccount", {{"name", serviceAccount}}}}}};
  json answer = tokenRequest;
  answer["spec"]["expirationSeconds"] = granted;
  answer["status"] = {
      {"token", base64Url(R"({"alg":"RS256","kid":"double"})") + "." + base64Url(claims.dump()) +
                    "." + base64Url("signature-" + std::to_string(serial))},
      {"expirationTimestamp", rfc3339(now + std::chrono::seconds(granted))}};
  return answer;
}

std::optional<json> tokenClaims(const std::string& token) {
  auto first = token.find('.');
  auto second = token.find('.', first == std::string::npos ? first : first + 1);
  if (first == std::string::npos || second == std::string::npos) return std::nullopt;
  json claims =
      json::parse(base64UrlDecode(token.substr(first + 1, second - first - 1)), nullptr, false);
  if (!claims.is_object()) return std::nullopt;
  return claims;
}

}  // namespace outpost::test
