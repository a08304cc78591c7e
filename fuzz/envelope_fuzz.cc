// The cloud envelope's codecs (cloudhub-client/src/codec/codec.cc, outpost/cloudhub/envelope.h):
// every input is decoded as a JSON frame and as a protobuf frame, as the MQTT and WebSocket links
// do with what a broker or CloudCore sends. Checked: decode never throws or crashes, and an
// envelope it accepts survives encode -> decode in both encodings with the same fields (content
// compared as JSON values), and the helpers that read an accepted envelope's content do not fail.

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "outpost/cloudhub/envelope.h"

namespace {

using nlohmann::json;
using outpost::cloudhub::Encoding;
using outpost::cloudhub::Envelope;
using outpost::fuzz::check;

// Content as a JSON value's canonical text ("null" when it is not JSON).
std::string canonical(const std::string& content) {
  json j = json::parse(content, nullptr, false);
  if (j.is_discarded()) return "<not json>";
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool sameEnvelope(const Envelope& a, const Envelope& b) {
  return a.header.msgId == b.header.msgId && a.header.parentMsgId == b.header.parentMsgId &&
         a.header.timestamp == b.header.timestamp &&
         a.header.resourceVersion == b.header.resourceVersion && a.header.sync == b.header.sync &&
         a.header.type == b.header.type && a.route.source == b.route.source &&
         a.route.destination == b.route.destination && a.route.group == b.route.group &&
         a.route.operation == b.route.operation && a.route.resource == b.route.resource &&
         canonical(a.content) == canonical(b.content);
}

// Is every string field valid UTF-8 (JSON can only carry those)?
bool utf8(std::string_view s) {
  try {
    (void)json(std::string(s)).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}
bool jsonCarries(const Envelope& e) {
  for (const std::string* s : {&e.header.msgId, &e.header.parentMsgId, &e.header.resourceVersion,
                               &e.header.type, &e.route.source, &e.route.destination,
                               &e.route.group, &e.route.operation, &e.route.resource}) {
    if (!utf8(*s)) return false;
  }
  return true;
}

void roundTrip(const Envelope& env, Encoding from) {
  for (Encoding to : {Encoding::kJson, Encoding::kProtobuf}) {
    // A protobuf string field may hold bytes that are not UTF-8; the JSON form cannot carry them
    // (nlohmann's dump throws). The links answer in the encoding they received, so that case is
    // left out rather than reported.
    if (to == Encoding::kJson && from == Encoding::kProtobuf && !jsonCarries(env)) continue;
    std::string wire = outpost::cloudhub::encode(env, to);
    auto again = outpost::cloudhub::decode(wire, to, wire.size() + 1);
    check(again.envelope.has_value(),
          "an accepted envelope, encoded again, is refused: " +
              (again.failure ? again.failure->reason : std::string("?")));
    check(sameEnvelope(env, *again.envelope), "encode -> decode changed the envelope");
  }
  (void)outpost::cloudhub::contentObject(env);
  (void)outpost::cloudhub::ackedMessageIds(env);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view frame = outpost::fuzz::asText(data, size);
  for (Encoding enc : {Encoding::kJson, Encoding::kProtobuf}) {
    auto decoded = outpost::cloudhub::decode(frame, enc);
    check(decoded.envelope.has_value() != decoded.failure.has_value(),
          "decode gave both or neither of an envelope and a failure");
    if (decoded.failure) {
      (void)outpost::cloudhub::decodeErrorName(decoded.failure->kind);
      continue;
    }
    roundTrip(*decoded.envelope, enc);
  }
  // The size limit: one byte under the frame's size is always refused as too large.
  if (size > 0) {
    auto small = outpost::cloudhub::decode(frame, Encoding::kJson, size - 1);
    check(small.failure && small.failure->kind == outpost::cloudhub::DecodeError::kTooLarge,
          "a frame over maxBytes was not refused as too large");
  }
  return 0;
}
