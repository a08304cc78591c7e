#include "outpost/cloudhub/certificates.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "bootstrap/cert_crypto.h"
#include "bootstrap/https_client.h"
#include "outpost/core/backoff.h"
#include "outpost/core/event_loop.h"

namespace outpost::cloudhub {

namespace {

namespace fs = std::filesystem;

using crypto::isoTime;
using crypto::readWhole;

std::string errnoText() { return std::strerror(errno); }

// Writes `data` to `path` so that a reader (or a crash) sees the old file or the new one, never a
// part: a temporary file in the same directory, fsync, rename, fsync of the directory.
core::Status writeFileAtomic(const std::string& path, const std::string& data, mode_t mode) {
  fs::path target(path);
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return core::unavailable("cannot create directory " + dir.string() + ": " + ec.message());
  std::string name =
      ".";  // built step by step: GCC 12 warns falsely (-Wrestrict) on "." + string&&
  name += target.filename().string();
  name += ".tmpXXXXXX";
  std::string tmp = (dir / name).string();
  int fd = mkstemp(tmp.data());
  if (fd < 0)
    return core::unavailable("cannot create a file in " + dir.string() + ": " + errnoText());
  auto fail = [&](const std::string& what) {
    std::string msg = what + " " + tmp + ": " + errnoText();
    close(fd);
    unlink(tmp.c_str());
    return core::unavailable(msg);
  };
  if (fchmod(fd, mode) != 0) return fail("cannot set the mode of");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write");
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("cannot fsync");
  if (close(fd) != 0) {
    unlink(tmp.c_str());
    return core::unavailable("cannot close " + tmp + ": " + errnoText());
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    std::string msg = "cannot rename " + tmp + " to " + path + ": " + errnoText();
    unlink(tmp.c_str());
    return core::unavailable(msg);
  }
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return core::okStatus();
}

std::string trim(std::string s) {
  auto notSpace = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), notSpace));
  s.erase(std::find_if(s.rbegin(), s.rend(), notSpace).base(), s.end());
  return s;
}

struct Token {
  std::string caHash;  // lower-case hex
  std::string jwt;
};

bool isBase64Url(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '=';
  });
}

core::Result<Token> parseToken(const std::string& text, const std::string& file) {
  const std::string expected =
      "expected <sha256 hex of the CA certificate>.<JWT> as `keadm gettoken` prints it";
  auto dot = text.find('.');
  if (dot == std::string::npos)
    return core::invalidArgument("bootstrap token in " + file + " is malformed: no '.'; " +
                                 expected);
  Token t{text.substr(0, dot), text.substr(dot + 1)};
  std::transform(t.caHash.begin(), t.caHash.end(), t.caHash.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (t.caHash.size() != 64 || !std::all_of(t.caHash.begin(), t.caHash.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    return core::invalidArgument("bootstrap token in " + file +
                                 " is malformed: its first part is not 64 hex digits; " + expected);
  }
  std::vector<std::string> parts;
  std::stringstream ss(t.jwt);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  if (parts.size() != 3 || t.jwt.back() == '.' ||
      !std::all_of(parts.begin(), parts.end(), isBase64Url)) {
    return core::invalidArgument("bootstrap token in " + file +
                                 " is malformed: its second part is not a JWT "
                                 "(header.payload.signature in base64url); " +
                                 expected);
  }
  return t;
}

double unixSeconds(core::WallTime t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

class CertManagerImpl final : public CertificateManager {
 public:
  CertManagerImpl(CertificateOptions o, core::Clock& clock, core::Logging& logging,
                  core::MetricsRegistry& metrics)
      : o_(std::move(o)),
        clock_(clock),
        log_(logging.get("certs")),
        loop_("certs", clock),
        rng_(o_.seed ? o_.seed : std::random_device{}()),
        backoff_(o_.retryBase, o_.retryCap, rng_()),
        expiry_(metrics.gauge("outpost_cloud_certificate_expiry_timestamp_seconds",
                              "notAfter of the node's client certificate (Unix seconds)")),
        nextRotation_(
            metrics.gauge("outpost_cloud_certificate_next_rotation_timestamp_seconds",
                          "When the client certificate is due for renewal (Unix seconds)")),
        rotationsTotal_(metrics.counter("outpost_cloud_certificate_rotations_total",
                                        "Client certificates renewed by this process")),
        failuresTotal_(metrics.counter("outpost_cloud_certificate_rotation_failures_total",
                                       "Failed client certificate renewals")) {}

  ~CertManagerImpl() override { stop(); }

  // ---- CertificateManager

  core::Status ensure() override {
    std::lock_guard work(workMu_);
    auto current = loadCurrent();
    if (current.isOk()) {
      setCurrent(*current, /*fresh=*/false);
      log_.info("client certificate ", o_.certFile, " valid until ", isoTime(current->notAfter));
      return core::okStatus();
    }
    std::string why = current.status().message();
    if (o_.tokenFile.empty() || o_.certServer.empty()) {
      // Names only what is missing: a cert_server already set is not asked for again.
      std::string get =
          o_.certServer.empty()
              ? "set cloud.websocket.cert_server to CloudCore's https://<host>:10002 and put a "
                "bootstrap token from the cloud (`keadm gettoken` on the cluster) in a file named "
                "in cloud.websocket.token_file"
              : "put a bootstrap token from the cloud (`keadm gettoken` on the cluster) in a file "
                "and name it in cloud.websocket.token_file (cloud.websocket.cert_server is " +
                    o_.certServer + ")";
      return core::failedPrecondition(why + ". To get a certificate, " + get +
                                      "; or place a valid certificate and key signed by the "
                                      "cloud's CA at cloud.tls.cert (" +
                                      o_.certFile + ") and cloud.tls.key (" + o_.keyFile +
                                      "), then restart outpostd");
    }
    log_.info(why, "; bootstrapping from the token in ", o_.tokenFile);
    auto s = doBootstrap();
    if (!s.isOk()) return s.withContext("certificate bootstrap (" + why + ")");
    return s;
  }

  core::Status bootstrap() override {
    std::lock_guard work(workMu_);
    return doBootstrap();
  }

  core::Status rotate() override {
    std::lock_guard work(workMu_);
    return doRotate();
  }

  void startRotation(std::function<void()> onRotated) override {
    onRotated_ = std::move(onRotated);
    loop_.start();
    loop_.post([this] { check(); });
    loop_.runEvery(o_.checkInterval, [this] { check(); });
  }

  void stop() override { loop_.stop(); }

  CertificateState state() const override {
    std::lock_guard lock(stateMu_);
    return state_;
  }

 private:
  core::Result<crypto::CertInfo> loadCurrent() {
    auto cert = readWhole(o_.certFile);
    if (!cert) return core::notFound("client certificate " + o_.certFile + " does not exist");
    auto info = crypto::parseCertPem(*cert);
    if (!info.isOk())
      return core::invalidArgument("client certificate " + o_.certFile +
                                   " is unreadable: " + info.status().message());
    auto key = readWhole(o_.keyFile);
    if (!key) return core::notFound("client key " + o_.keyFile + " does not exist");
    auto match = crypto::checkKeyMatches(*cert, *key);
    if (!match.isOk())
      return core::invalidArgument("client certificate " + o_.certFile + " and key " + o_.keyFile +
                                   " do not match: " + match.message());
    if (!readWhole(o_.caFile)) return core::notFound("CA file " + o_.caFile + " does not exist");
    if (clock_.wallNow() >= info->notAfter)
      return core::failedPrecondition("client certificate " + o_.certFile + " expired on " +
                                      isoTime(info->notAfter));
    return info;
  }

  core::Result<Token> readToken() {
    auto text = readWhole(o_.tokenFile);
    if (!text) return core::notFound("cannot read the bootstrap token file " + o_.tokenFile);
    std::string t = trim(*text);
    if (t.empty())
      return core::invalidArgument("the bootstrap token file " + o_.tokenFile + " is empty");
    return parseToken(t, o_.tokenFile);
  }

  std::string commonName() const { return "system:node:" + o_.nodeName; }

  HttpsRequest request(const std::string& target) const {
    HttpsRequest r;
    r.server = o_.certServer;
    r.target = target;
    r.timeout = o_.requestTimeout;
    return r;
  }

  // Asks for a certificate for a fresh key; checks the answer before anything is written.
  core::Result<std::pair<std::string, std::string>> fetchCertificate(HttpsRequest r,
                                                                     const std::string& caPem) {
    OUTPOST_ASSIGN_OR_RETURN(auto kc, crypto::makeKeyAndCsr(commonName(), "system:nodes"));
    r.body = kc.csrDer;
    r.headers.emplace_back("NodeName", o_.nodeName);
    r.verifyServer = true;
    r.caPem = caPem;
    OUTPOST_ASSIGN_OR_RETURN(auto res, httpsGet(r));
    if (res.status != 200) {
      std::string body = trim(res.body.substr(0, 200));
      return core::Status(res.status == 401 || res.status == 403 ? core::Code::kUnauthenticated
                                                                 : core::Code::kUnavailable,
                          "the certificate server " + o_.certServer +
                              " refused GET /edge.crt: HTTP " + std::to_string(res.status) + " " +
                              res.reason + (body.empty() ? "" : ": " + body));
    }
    auto pem = crypto::certDerToPem(res.body);
    if (!pem.isOk())
      return pem.status().withContext("the certificate server's answer to GET /edge.crt");
    OUTPOST_RETURN_IF_ERROR(crypto::checkKeyMatches(*pem, kc.keyPem)
                                .withContext("the certificate from " + o_.certServer));
    OUTPOST_RETURN_IF_ERROR(
        crypto::checkIssuedBy(*pem, caPem).withContext("the certificate from " + o_.certServer));
    OUTPOST_ASSIGN_OR_RETURN(auto info, crypto::parseCertPem(*pem));
    if (info.commonName != commonName())
      return core::invalidArgument("the certificate from " + o_.certServer + " is for CN \"" +
                                   info.commonName + "\", not \"" + commonName() + "\"");
    return std::make_pair(std::move(*pem), std::move(kc.keyPem));
  }

  core::Status install(const std::string& certPem, const std::string& keyPem,
                       const std::string* caPem) {
    // Both temporary files are complete before the first rename; a reader in between the renames
    // sees a key that does not match the certificate and retries (ensure() re-bootstraps).
    if (caPem) OUTPOST_RETURN_IF_ERROR(writeFileAtomic(o_.caFile, *caPem, 0644));
    OUTPOST_RETURN_IF_ERROR(writeFileAtomic(o_.keyFile, keyPem, 0600));
    OUTPOST_RETURN_IF_ERROR(writeFileAtomic(o_.certFile, certPem, 0644));
    return core::okStatus();
  }

  core::Status doBootstrap() {
    if (o_.certServer.empty())
      return core::failedPrecondition("cloud.websocket.cert_server is not set");
    OUTPOST_ASSIGN_OR_RETURN(Token token, readToken());
    // 1. The CA, unverified, pinned by the token's hash.
    HttpsRequest caReq = request("/ca.crt");
    caReq.verifyServer = false;
    OUTPOST_ASSIGN_OR_RETURN(auto caRes, httpsGet(caReq));
    if (caRes.status != 200)
      return core::unavailable("the certificate server " + o_.certServer +
                               " refused GET /ca.crt: HTTP " + std::to_string(caRes.status) + " " +
                               caRes.reason);
    std::string hash = crypto::sha256Hex(caRes.body);
    if (hash != token.caHash)
      return core::permissionDenied(
          "the CA certificate served by " + o_.certServer + " has sha256 " + hash +
          " but the bootstrap token in " + o_.tokenFile + " pins " + token.caHash +
          "; nothing was written (a token from another cluster, or not the real CloudCore)");
    auto caPem = crypto::certDerToPem(caRes.body);
    if (!caPem.isOk()) return caPem.status().withContext("the CA served by " + o_.certServer);
    // 2-3. Key, CSR, certificate over TLS verified by that CA, authorised by the JWT.
    HttpsRequest certReq = request("/edge.crt");
    certReq.headers.emplace_back("Authorization", "Bearer " + token.jwt);
    auto got = fetchCertificate(certReq, *caPem);
    if (!got.isOk()) {
      auto s = got.status();
      if (s.code() == core::Code::kUnauthenticated)
        return core::Status(s.code(), s.message() + " (the bootstrap token in " + o_.tokenFile +
                                          " is not accepted: expired or from another cluster; "
                                          "make a new one with `keadm gettoken`)");
      return s;
    }
    OUTPOST_RETURN_IF_ERROR(install(got->first, got->second, &*caPem));
    OUTPOST_ASSIGN_OR_RETURN(auto info, crypto::parseCertPem(got->first));
    log_.info("bootstrapped client certificate ", info.serial, " for ", info.commonName,
              " valid until ", isoTime(info.notAfter));
    setCurrent(info, /*fresh=*/true);
    return core::okStatus();
  }

  core::Status doRotate() {
    if (o_.certServer.empty())
      return core::failedPrecondition("cloud.websocket.cert_server is not set");
    auto caPem = readWhole(o_.caFile);
    if (!caPem) return core::notFound("cannot read the CA file " + o_.caFile);
    HttpsRequest r = request("/edge.crt");
    r.certFile = o_.certFile;
    r.keyFile = o_.keyFile;
    OUTPOST_ASSIGN_OR_RETURN(auto got, fetchCertificate(r, *caPem));
    OUTPOST_RETURN_IF_ERROR(install(got.first, got.second, nullptr));
    OUTPOST_ASSIGN_OR_RETURN(auto info, crypto::parseCertPem(got.first));
    log_.info("renewed client certificate: serial ", info.serial, " valid until ",
              isoTime(info.notAfter));
    setCurrent(info, /*fresh=*/true);
    return core::okStatus();
  }

  // A certificate just obtained is young by definition: its renewal point is measured from now on
  // the local clock, so a local clock ahead of the server's cannot make it look due at once (which
  // would renew again and again). One found on disk at start is measured from its notBefore.
  void setCurrent(const crypto::CertInfo& info, bool fresh) {
    std::uniform_real_distribution<double> share(o_.rotateFrom, o_.rotateTo);
    auto lifetime = info.notAfter - info.notBefore;
    auto offset = std::chrono::duration_cast<core::WallTime::duration>(lifetime * share(rng_));
    core::WallTime wallNow = clock_.wallNow();
    core::WallTime due = (fresh ? wallNow : info.notBefore) + offset;
    // The same point on the monotonic clock: a wall clock set back cannot postpone it.
    auto left = std::max(due - wallNow, core::WallTime::duration::zero());
    std::lock_guard lock(stateMu_);
    dueWall_ = due;
    dueMono_ = clock_.now() + std::chrono::duration_cast<core::Duration>(left);
    state_.present = true;
    state_.subject = "CN=" + info.commonName + ",O=" + info.organization;
    state_.serial = info.serial;
    state_.notBefore = info.notBefore;
    state_.notAfter = info.notAfter;
    state_.nextRotation = due;
    expiry_.set(unixSeconds(info.notAfter));
    nextRotation_.set(unixSeconds(due));
  }

  // On the loop: every checkInterval and once at start.
  void check() {
    bool due;
    {
      std::lock_guard lock(stateMu_);
      due = !retryPending_ && state_.present &&
            (clock_.wallNow() >= dueWall_ || clock_.now() >= dueMono_);
    }
    if (due) renew();
    std::lock_guard lock(stateMu_);
    state_.checks++;
  }

  void renew() {
    core::Status s;
    {
      std::lock_guard work(workMu_);
      s = doRotate();
      // Expired by the local clock and refused: a token, when there is one, gets a new one.
      if (!s.isOk() && !o_.tokenFile.empty()) {
        auto notAfter = state().notAfter;
        if (notAfter && clock_.wallNow() >= *notAfter) {
          log_.warn("renewal failed (", s.message(),
                    ") and the certificate expired; bootstrapping");
          auto b = doBootstrap();
          if (b.isOk()) s = b;
        }
      }
    }
    if (s.isOk()) {
      backoff_.reset();
      {
        std::lock_guard lock(stateMu_);
        state_.rotations++;
        state_.lastRotation = clock_.wallNow();
        state_.lastError.clear();
      }
      rotationsTotal_.inc();
      if (onRotated_) onRotated_();
      return;
    }
    auto wait = backoff_.next();
    log_.warn("certificate renewal failed: ", s.message(), "; retrying in ",
              std::chrono::duration_cast<std::chrono::seconds>(wait).count(), " s");
    {
      std::lock_guard lock(stateMu_);
      state_.failures++;
      state_.lastError = s.message();
    }
    failuresTotal_.inc();
    retryPending_ = true;
    loop_.runAfter(wait, [this] {
      retryPending_ = false;
      renew();
    });
  }

  const CertificateOptions o_;
  core::Clock& clock_;
  core::Logger log_;
  core::EventLoop loop_;
  std::mt19937_64 rng_;
  core::Backoff backoff_;      // loop only
  bool retryPending_ = false;  // loop only
  std::function<void()> onRotated_;
  core::Gauge& expiry_;
  core::Gauge& nextRotation_;
  core::Counter& rotationsTotal_;
  core::Counter& failuresTotal_;

  std::mutex workMu_;  // one fetch or install at a time (the caller's thread or the loop)
  mutable std::mutex stateMu_;
  CertificateState state_;
  core::WallTime dueWall_;
  core::MonoTime dueMono_;
};

}  // namespace

CertificateManagerPtr makeCertificateManager(CertificateOptions options, core::Clock& clock,
                                             core::Logging& logging,
                                             core::MetricsRegistry& metrics) {
  return std::make_unique<CertManagerImpl>(std::move(options), clock, logging, metrics);
}

}  // namespace outpost::cloudhub
