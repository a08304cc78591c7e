#pragma once
// Envelope: the message model shared by both cloud transports (PROTOCOL.md §1), and its codecs.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/core/status.h"

namespace outpost::cloudhub {

struct Header {
  std::string msgId;        // uuid v4
  std::string parentMsgId;  // set on responses and acks
  int64_t timestamp = 0;    // ms since the Unix epoch
  std::string resourceVersion;
  std::optional<bool> sync;
  std::string type;
};

struct Route {
  std::string source;
  std::string destination;
  std::string group;
  std::string
      operation;  // insert, update, patch, delete, query, get, response, error, keepalive, ...
  std::string resource;  // "<ns>/<type>/<name>" or another path ("node", "membership/detail")
};

struct Envelope {
  Header header;
  Route route;
  // The content as JSON text: an object, a string, or null. Always present on the wire.
  std::string content = "null";
};

enum class Encoding { kJson, kProtobuf };
std::optional<Encoding> parseEncoding(std::string_view name);

// Why a frame was refused; also the label of the "invalid messages" metric.
enum class DecodeError { kTooLarge, kMalformed, kInvalid };
std::string_view decodeErrorName(DecodeError e);

struct DecodeFailure {
  DecodeError kind;
  std::string reason;  // for the log: which field, what was wrong
};

// A decoded envelope, or why the frame was refused.
struct Decoded {
  std::optional<Envelope> envelope;
  std::optional<DecodeFailure> failure;
};

inline constexpr size_t kDefaultMaxMessageBytes = 2 << 20;

// Parses one frame in `encoding`, strictly: wrong types, unknown operations, missing required
// fields and frames over `maxBytes` are refused with a reason. A trailing newline is accepted
// (EdgeCore sends one).
Decoded decode(std::string_view frame, Encoding encoding,
               size_t maxBytes = kDefaultMaxMessageBytes);
// Writes the envelope; empty optional fields are left out.
std::string encode(const Envelope& env, Encoding encoding);

// The content as a JSON object's text: the object itself, or a string that holds a JSON object (as
// KubeEdge sends patches). nullopt when the content is neither. Expects valid JSON content, as
// decode() leaves it (an object is returned without being parsed again).
std::optional<std::string> contentObject(const Envelope& env);
// Sets the content to a JSON string value holding `text` ("OK", "ping").
void setContentString(Envelope& env, std::string_view text);

// Acks (our MQTT scheme, docs/mqtt-link.md): a single ack is operation `response` with
// `parent_msg_id`; a batch ack, for several messages stored in one commit, is operation `response`
// on resource `kBatchAckResource` with no `parent_msg_id` and content a JSON array of the acked
// `msg_id`s.
inline constexpr std::string_view kBatchAckResource = "acks";
// The msg_ids an envelope acknowledges: its parent_msg_id for a single ack, every id of a batch
// ack, none when it is no ack.
std::vector<std::string> ackedMessageIds(const Envelope& env);

// A fresh random uuid v4, for message ids.
std::string newMessageId();

}  // namespace outpost::cloudhub
