#include <sys/random.h>

#include <array>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <random>

#include "envelope.pb.h"
#include "outpost/cloudhub/envelope.h"
#include "outpost/validation/validation.h"

namespace outpost::cloudhub {

using nlohmann::json;

namespace {

// The operations of PROTOCOL.md §1.
constexpr std::array<std::string_view, 12> kOperations = {
    "insert",   "update", "patch",     "delete", "query",   "get",
    "response", "error",  "keepalive", "upload", "publish", "subscribe"};

Decoded fail(DecodeError kind, std::string reason) {
  return {std::nullopt, DecodeFailure{kind, std::move(reason)}};
}

// Reads an optional string field; a present non-string is an error.
bool readString(const json& obj, const char* field, std::string& out, std::string& why) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return true;
  if (!it->is_string()) {
    why = std::string(field) + " must be a string";
    return false;
  }
  out = it->get<std::string>();
  return true;
}

Decoded validate(Envelope env) {
  if (env.header.msgId.empty()) return fail(DecodeError::kInvalid, "header.msg_id is missing");
  if (env.header.msgId.size() > 128)
    return fail(DecodeError::kInvalid, "header.msg_id is too long");
  if (!env.route.operation.empty() &&
      std::find(kOperations.begin(), kOperations.end(), env.route.operation) == kOperations.end()) {
    return fail(
        DecodeError::kInvalid,
        "route.operation \"" + validation::printable(env.route.operation) + "\" is not known");
  }
  if (env.route.operation.empty()) return fail(DecodeError::kInvalid, "route.operation is missing");
  if (env.header.timestamp < 0) return fail(DecodeError::kInvalid, "header.timestamp is negative");
  return {std::move(env), std::nullopt};
}

Decoded decodeJson(std::string_view frame) {
  // Before the parser: a text nested deeper than any object needs would take the serializer's
  // stack (dump() recurses) wherever the content goes next.
  if (auto s = validation::jsonWithin(frame); !s.isOk())
    return fail(DecodeError::kMalformed, s.message());
  json j = json::parse(frame, nullptr, false);
  if (j.is_discarded()) return fail(DecodeError::kMalformed, "not valid JSON");
  if (!j.is_object()) return fail(DecodeError::kMalformed, "not a JSON object");
  Envelope env;
  std::string why;
  auto header = j.find("header");
  if (header == j.end() || !header->is_object())
    return fail(DecodeError::kInvalid, "header is missing or not an object");
  if (!readString(*header, "msg_id", env.header.msgId, why) ||
      !readString(*header, "parent_msg_id", env.header.parentMsgId, why) ||
      !readString(*header, "resourceversion", env.header.resourceVersion, why) ||
      !readString(*header, "type", env.header.type, why)) {
    return fail(DecodeError::kInvalid, "header." + why);
  }
  if (auto ts = header->find("timestamp"); ts != header->end() && !ts->is_null()) {
    if (!ts->is_number_integer())
      return fail(DecodeError::kInvalid, "header.timestamp must be an integer");
    env.header.timestamp = ts->get<int64_t>();
  }
  if (auto sync = header->find("sync"); sync != header->end() && !sync->is_null()) {
    if (!sync->is_boolean()) return fail(DecodeError::kInvalid, "header.sync must be a boolean");
    env.header.sync = sync->get<bool>();
  }
  auto route = j.find("route");
  if (route == j.end() || !route->is_object())
    return fail(DecodeError::kInvalid, "route is missing or not an object");
  if (!readString(*route, "source", env.route.source, why) ||
      !readString(*route, "destination", env.route.destination, why) ||
      !readString(*route, "group", env.route.group, why) ||
      !readString(*route, "operation", env.route.operation, why) ||
      !readString(*route, "resource", env.route.resource, why)) {
    return fail(DecodeError::kInvalid, "route." + why);
  }
  auto content = j.find("content");
  env.content = content == j.end() ? "null" : content->dump();
  return validate(std::move(env));
}

Decoded decodeProto(std::string_view frame) {
  wire::v1::Envelope pb;
  if (!pb.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return fail(DecodeError::kMalformed, "not a valid protobuf envelope");
  }
  Envelope env;
  env.header.msgId = pb.header().msg_id();
  env.header.parentMsgId = pb.header().parent_msg_id();
  env.header.timestamp = pb.header().timestamp();
  env.header.resourceVersion = pb.header().resource_version();
  if (pb.header().has_sync()) env.header.sync = pb.header().sync();
  env.header.type = pb.header().type();
  env.route.source = pb.route().source();
  env.route.destination = pb.route().destination();
  env.route.group = pb.route().group();
  env.route.operation = pb.route().operation();
  env.route.resource = pb.route().resource();
  env.content = pb.content().empty() ? "null" : pb.content();
  if (auto s = validation::jsonWithin(env.content); !s.isOk())
    return fail(DecodeError::kMalformed, "content: " + s.message());
  if (!json::accept(env.content)) return fail(DecodeError::kInvalid, "content is not JSON");
  return validate(std::move(env));
}

}  // namespace

std::optional<Encoding> parseEncoding(std::string_view name) {
  if (name == "json") return Encoding::kJson;
  if (name == "protobuf") return Encoding::kProtobuf;
  return std::nullopt;
}

std::string_view decodeErrorName(DecodeError e) {
  switch (e) {
    case DecodeError::kTooLarge:
      return "too_large";
    case DecodeError::kMalformed:
      return "malformed";
    case DecodeError::kInvalid:
      return "invalid";
  }
  return "invalid";
}

Decoded decode(std::string_view frame, Encoding encoding, size_t maxBytes) {
  if (frame.size() > maxBytes) {
    return fail(DecodeError::kTooLarge, "frame of " + std::to_string(frame.size()) +
                                            " bytes exceeds the limit of " +
                                            std::to_string(maxBytes));
  }
  if (encoding == Encoding::kProtobuf) return decodeProto(frame);
  while (!frame.empty() && (frame.back() == '\n' || frame.back() == '\r')) frame.remove_suffix(1);
  return decodeJson(frame);
}

std::string encode(const Envelope& env, Encoding encoding) {
  if (encoding == Encoding::kProtobuf) {
    wire::v1::Envelope pb;
    auto* h = pb.mutable_header();
    h->set_msg_id(env.header.msgId);
    h->set_parent_msg_id(env.header.parentMsgId);
    h->set_timestamp(env.header.timestamp);
    h->set_resource_version(env.header.resourceVersion);
    if (env.header.sync) h->set_sync(*env.header.sync);
    h->set_type(env.header.type);
    auto* r = pb.mutable_route();
    r->set_source(env.route.source);
    r->set_destination(env.route.destination);
    r->set_group(env.route.group);
    r->set_operation(env.route.operation);
    r->set_resource(env.route.resource);
    if (env.content != "null") pb.set_content(env.content);
    return pb.SerializeAsString();
  }
  json header = json::object();
  header["msg_id"] = env.header.msgId;
  if (!env.header.parentMsgId.empty()) header["parent_msg_id"] = env.header.parentMsgId;
  header["timestamp"] = env.header.timestamp;
  if (!env.header.resourceVersion.empty()) header["resourceversion"] = env.header.resourceVersion;
  if (env.header.sync) header["sync"] = *env.header.sync;
  if (!env.header.type.empty()) header["type"] = env.header.type;
  json route = json::object();
  if (!env.route.source.empty()) route["source"] = env.route.source;
  if (!env.route.destination.empty()) route["destination"] = env.route.destination;
  if (!env.route.group.empty()) route["group"] = env.route.group;
  if (!env.route.operation.empty()) route["operation"] = env.route.operation;
  if (!env.route.resource.empty()) route["resource"] = env.route.resource;
  json content = json::parse(env.content, nullptr, false);
  if (content.is_discarded()) content = nullptr;
  json out = json::object();
  out["header"] = std::move(header);
  out["route"] = std::move(route);
  out["content"] = std::move(content);
  // Never throws: a string that is not UTF-8 (one echoed from a protobuf frame, which nothing
  // checked) has its bad bytes replaced instead of ending the link's thread.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<std::string> contentObject(const Envelope& env) {
  // Decoded content is valid JSON text already: one that opens with '{' is an object, no need to
  // parse its ~2 KB again.
  size_t first = env.content.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && env.content[first] == '{') return env.content;
  json c = json::parse(env.content, nullptr, false);
  if (c.is_object()) return env.content;
  if (c.is_string() && validation::jsonWithin(c.get_ref<const std::string&>()).isOk()) {
    json inner = json::parse(c.get<std::string>(), nullptr, false);
    if (inner.is_object()) return inner.dump();
  }
  return std::nullopt;
}

std::vector<std::string> ackedMessageIds(const Envelope& env) {
  if (env.route.operation != "response") return {};
  if (!env.header.parentMsgId.empty()) return {env.header.parentMsgId};
  if (env.route.resource != kBatchAckResource) return {};
  json c = json::parse(env.content, nullptr, false);
  std::vector<std::string> ids;
  if (!c.is_array()) return ids;
  for (const auto& id : c) {
    if (id.is_string()) ids.push_back(id.get<std::string>());
  }
  return ids;
}

void setContentString(Envelope& env, std::string_view text) {
  env.content = json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string newMessageId() {
  // The kernel's generator (getrandom), not OpenSSL's: RAND_bytes initialised OpenSSL's DRBG and
  // providers and read its configuration file in every process, on MQTT nodes for this alone
  // (~2 MB of libcrypto paged in; docs/benchmarks.md, "Footprint").
  std::array<unsigned char, 16> b{};
  size_t filled = 0;
  while (filled < b.size()) {
    ssize_t n = getrandom(b.data() + filled, b.size() - filled, 0);
    if (n > 0) {
      filled += static_cast<size_t>(n);
    } else if (errno != EINTR) {
      std::random_device rd;  // getrandom unavailable: the C++ library's own source
      for (; filled < b.size(); ++filled) b[filled] = static_cast<unsigned char>(rd());
    }
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 0xf];
  }
  return out;
}

}  // namespace outpost::cloudhub
