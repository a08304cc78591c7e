// The CRI client's HTTP/2 frame reader (deploy/src/grpc_h2.cc): the input is what the container
// runtime answers on the socket, byte for byte (its connection preface, SETTINGS, HEADERS, DATA,
// trailers, RST_STREAM, GOAWAY, ... or garbage). A unary call goes through h2::Channel to a unix
// socket of the harness; a thread of the harness accepts, writes the input, half-closes and reads
// until the client hangs up. Checked: the call returns (no crash, hang, leak or undefined
// behaviour) with a response no larger than kMaxResponseBytes; percentDecode never grows its input.

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "fuzz_util.h"
#include "grpc_h2.h"

namespace {

namespace h2 = outpost::deploy::h2;
using outpost::fuzz::check;

std::string gDir, gSocket;
int gListen = -1;

void cleanup() {
  if (gListen >= 0) ::close(gListen);
  std::error_code ec;
  if (!gDir.empty()) std::filesystem::remove_all(gDir, ec);
}

// One connection: accept, send `answer`, half-close, read until the client closes.
void serve(const std::string& answer) {
  pollfd p{gListen, POLLIN, 0};
  if (::poll(&p, 1, 5000) <= 0) return;
  int fd = ::accept4(gListen, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  std::string_view left = answer;
  while (!left.empty()) {
    ssize_t n = ::send(fd, left.data(), left.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    left.remove_prefix(static_cast<size_t>(n));
  }
  ::shutdown(fd, SHUT_WR);
  char buf[4096];
  for (;;) {
    pollfd r{fd, POLLIN, 0};
    if (::poll(&r, 1, 5000) <= 0) break;
    if (::recv(fd, buf, sizeof(buf), 0) <= 0) break;
  }
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/outpost-h2-fuzz.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("grpc_h2_fuzz: mkdtemp");
    std::exit(1);
  }
  gDir = tmpl;
  gSocket = gDir + "/cri.sock";
  gListen = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (gListen < 0 || gSocket.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "grpc_h2_fuzz: cannot make a socket at %s\n", gSocket.c_str());
    std::exit(1);
  }
  std::memcpy(addr.sun_path, gSocket.data(), gSocket.size());
  if (::bind(gListen, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(gListen, 4) != 0) {
    std::perror("grpc_h2_fuzz: bind/listen");
    std::exit(1);
  }
  std::atexit(cleanup);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string answer(outpost::fuzz::asText(data, size));
  std::thread server(serve, answer);
  {
    h2::Channel channel("unix://" + gSocket, 0);  // no pooling: one connection per input
    auto result = channel.call("/runtime.v1.RuntimeService/Version", std::string("\x0a\x02v1", 4),
                               std::chrono::steady_clock::now() + std::chrono::seconds(5));
    if (result.isOk()) {
      check(result.value().size() <= h2::kMaxResponseBytes, "a response over the limit was taken");
    } else {
      (void)result.status().message();
    }
  }
  server.join();
  check(h2::percentDecode(answer).size() <= answer.size(), "percentDecode grew its input");
  (void)h2::socketPath(answer);
  return 0;
}
