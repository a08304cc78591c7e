#include "support/mosquitto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace outpost::test {

int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    throw std::runtime_error("bind to port 0 failed");
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

namespace {
bool canConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

void sh(const std::string& cmd) {
  std::string err;
  if (run({"/bin/sh", "-c", cmd}, nullptr, &err) != 0) throw std::runtime_error(cmd + ": " + err);
}
}  // namespace

TlsFiles makeTlsFiles(const std::filesystem::path& dir, const std::string& clientCn,
                      const std::string& clientO) {
  for (const std::string* name : {&clientCn, &clientO}) {
    if (name->find_first_of("/'\\\n") != std::string::npos) {
      throw std::invalid_argument(
          "makeTlsFiles: certificate name must not hold / ' \\ or a newline: " + *name);
    }
  }
  std::string clientSubject = (clientO.empty() ? "" : "/O=" + clientO) + "/CN=" + clientCn;
  TlsFiles f;
  std::string d = dir.string();
  f.ca = d + "/ca.crt";
  f.serverCert = d + "/server.crt";
  f.serverKey = d + "/server.key";
  f.clientCert = d + "/client.crt";
  f.clientKey = d + "/client.key";
  writeFile(dir / "server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  std::string q = " 2>/dev/null";
  sh("cd " + d +
     " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "
     "/CN=test-ca -keyout ca.key -out ca.crt" +
     q);
  sh("cd " + d +
     " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 "
     "-keyout server.key -out server.csr" +
     q);
  sh("cd " + d +
     " && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
     "-extfile server.ext -out server.crt" +
     q);
  sh("cd " + d + " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '" +
     clientSubject + "' -keyout client.key -out client.csr" + q);
  sh("cd " + d +
     " && openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "
     "client.crt" +
     q);
  return f;
}

std::string reissueClientCert(const std::filesystem::path& dir, const std::string& name,
                              const std::string& notBefore, const std::string& notAfter) {
  for (const std::string* arg : {&name, &notBefore, &notAfter}) {
    if (arg->find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
        std::string::npos)
      throw std::invalid_argument("reissueClientCert: letters, digits, - and _ only: " + *arg);
  }
  std::string d = dir.string();
  std::string db = d + "/ca-" + name;
  std::filesystem::create_directories(db);
  writeFile(db + "/index.txt", "");
  writeFile(db + "/serial", "1000\n");
  writeFile(db + "/ca.cnf",
            "[ca]\ndefault_ca = c\n[c]\ndatabase = " + db + "/index.txt\nnew_certs_dir = " + db +
                "\nserial = " + db + "/serial\npolicy = p\ndefault_md = sha256\n" +
                "unique_subject = no\n[p]\ncommonName = supplied\norganizationName = optional\n");
  sh("cd " + d + " && openssl ca -batch -notext -preserveDN -config " + db +
     "/ca.cnf -cert ca.crt -keyfile ca.key -in client.csr -out " + name + ".crt -startdate " +
     notBefore + " -enddate " + notAfter + " 2>/dev/null");
  return d + "/" + name + ".crt";
}

Mosquitto::Mosquitto(const TlsFiles* tls, const std::string& extraConfig) : tls_(tls != nullptr) {
  std::string conf = extraConfig + "persistence true\npersistence_location " +
                     dir_.path().string() + "/\n" +
                     "user root\nallow_anonymous true\nset_tcp_nodelay true\nlog_dest "
                     "stderr\nlog_type error\nlog_type warning\n";
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = freePort();
    std::string text = conf + "listener " + std::to_string(port_) + " 127.0.0.1\n";
    if (tls) {
      text += "cafile " + tls->ca + "\ncertfile " + tls->serverCert + "\nkeyfile " +
              tls->serverKey + "\nrequire_certificate true\ntls_version tlsv1.2\n";
    }
    writeFile(dir_ / "mosquitto.conf", text);
    start();
    if (child_) return;
  }
  throw std::runtime_error("mosquitto did not start");
}

Mosquitto::~Mosquitto() { stop(); }

std::string Mosquitto::uri() const {
  return (tls_ ? "ssl://127.0.0.1:" : "tcp://127.0.0.1:") + std::to_string(port_);
}

void Mosquitto::start() {
  if (child_) return;
  auto child = std::make_unique<Child>(
      std::vector<std::string>{"/usr/sbin/mosquitto", "-c", (dir_ / "mosquitto.conf").string()});
  bool up =
      waitFor([&] { return canConnect(port_) || !child->running(); }, std::chrono::seconds(10));
  if (up && child->running()) child_ = std::move(child);
}

void Mosquitto::stop() {
  if (!child_) return;
  child_->signal(SIGTERM);
  if (child_->wait(std::chrono::seconds(10)) < 0) child_->signal(SIGKILL);
  child_.reset();
}

}  // namespace outpost::test
