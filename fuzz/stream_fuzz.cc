// A stream tunnel message from the cloud (stream/, outpost::stream): decodeMessage, and for a
// connect message parseConnect on its data; the data also goes through the CRI log decoder.
// Checked: nothing throws or crashes; a decoded message encodes back to a message that decodes to
// the same id, type and data; an accepted connect names a served endpoint with Kubernetes names
// (namespace and container DNS-1123 labels, pod a DNS-1123 subdomain), an exec has 1 to 256
// arguments without NUL, at least one stream, a GET or POST method, and headers without CR, LF
// or NUL; a refusal's message is printable (it goes back to the cloud and into the log).

#include "fuzz_util.h"
#include "outpost/stream/cri_log.h"
#include "outpost/stream/frame.h"
#include "outpost/validation/validation.h"

namespace {

using outpost::fuzz::check;
namespace s = outpost::stream;
namespace v = outpost::validation;

bool printable(const std::string& m) {
  for (unsigned char c : m) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool hasCtl(const std::string& x) { return x.find_first_of("\r\n\0", 0, 3) != std::string::npos; }

void checkAccepted(const s::ConnectRequest& r) {
  if (r.endpoint != s::Endpoint::kMetricsResource) {
    check(v::dnsLabel("ns", r.ref.ns).isOk(), "an accepted namespace is a DNS-1123 label");
    check(v::dnsSubdomain("pod", r.ref.pod).isOk(), "an accepted pod is a DNS-1123 subdomain");
    check(v::dnsLabel("c", r.ref.container).isOk(), "an accepted container is a DNS-1123 label");
  }
  if (r.endpoint == s::Endpoint::kExec) {
    check(!r.command.empty() && r.command.size() <= s::kMaxCommandArgs, "exec: 1 to 256 args");
    for (const auto& a : r.command) {
      check(!a.empty() && a.find('\0') == std::string::npos, "exec: no empty or NUL argument");
    }
  }
  if (r.endpoint == s::Endpoint::kExec || r.endpoint == s::Endpoint::kAttach) {
    check(r.stdin || r.stdout || r.stderr, "exec/attach: at least one stream");
    check(r.method == "GET" || r.method == "POST", "exec/attach: GET or POST");
  }
  check(r.headers.size() <= s::kMaxHeaders, "at most kMaxHeaders headers");
  for (const auto& [name, value] : r.headers) {
    check(!name.empty() && !hasCtl(name) && !hasCtl(value), "headers hold no CR, LF or NUL");
  }
  if (r.logs.tailLines) check(*r.logs.tailLines >= 0, "tailLines >= 0");
  if (r.logs.sinceSeconds) check(*r.logs.sinceSeconds > 0, "sinceSeconds > 0");
  if (r.logs.limitBytes) check(*r.logs.limitBytes > 0, "limitBytes > 0");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto text = outpost::fuzz::asText(data, size);
  auto m = s::decodeMessage(text);
  if (!m.isOk()) {
    check(printable(m.status().message()), "a refusal is printable");
    return 0;
  }
  auto again =
      s::decodeMessage(s::encodeMessage(m->id, static_cast<s::MessageType>(m->type), m->data));
  check(again.isOk() && again->id == m->id && again->type == m->type && again->data == m->data,
        "encode(decode(x)) decodes to the same message");
  if (m->type <= 2 || m->type == 6) {
    auto r = s::parseConnect(static_cast<s::MessageType>(m->type), m->data);
    if (r.isOk()) {
      checkAccepted(*r);
    } else {
      check(printable(r.status().message()), "a refusal is printable");
    }
  }
  s::CriLogDecoder decoder;
  size_t lines = 0;
  s::CriLogDecoder::Emit emit = [&](const s::CriLogLine& l) {
    ++lines;
    check(l.text.find('\n') == std::string_view::npos, "a log line holds no newline");
    (void)s::rfc3339Seconds(l.time);
  };
  decoder.feed(m->data, emit);
  decoder.flush(emit);
  return 0;
}
