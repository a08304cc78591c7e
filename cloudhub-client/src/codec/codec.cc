#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <iterator>
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

// An iterator over the frame's bytes that keeps, in `*pos`, how many the parser has read: the SAX
// handler below learns from it where `content` starts and ends in the frame.
class CountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  CountingIterator(const char* p, size_t* pos) : p_(p), pos_(pos) {}
  reference operator*() const { return *p_; }
  CountingIterator& operator++() {
    ++p_;
    ++*pos_;
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator before = *this;
    ++*this;
    return before;
  }
  bool operator==(const CountingIterator& o) const { return p_ == o.p_; }
  bool operator!=(const CountingIterator& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  size_t* pos_;
};

// One pass of the JSON parser over an envelope, no DOM: the header's and route's fields with their
// types checked, the content located (an object or array is kept as the publisher's bytes, not
// written out again), the nesting bounded. Stops at the first thing wrong.
class EnvelopeReader final : public nlohmann::json_sax<json> {
 public:
  static constexpr size_t kMaxDepth = validation::JsonLimits{}.maxDepth;

  EnvelopeReader(std::string_view frame, const size_t& pos) : frame_(frame), pos_(pos) {}

  bool null() override {
    return scalar(nullptr, [] { return std::string("null"); });
  }
  bool boolean(bool v) override {
    if (depth_ == 2 && section_ == Section::kHeader && key_ == "sync") {
      env.header.sync = v;
      return true;
    }
    return scalar(nullptr, [v] { return std::string(v ? "true" : "false"); });
  }
  bool number_integer(number_integer_t v) override {
    if (isTimestamp()) {
      env.header.timestamp = v;
      return true;
    }
    return scalar(nullptr, [v] { return std::to_string(v); });
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (isTimestamp()) {
      if (v > static_cast<number_unsigned_t>(INT64_MAX))
        return refuse(DecodeError::kInvalid, "header.timestamp must be an integer");
      env.header.timestamp = static_cast<int64_t>(v);
      return true;
    }
    return scalar(nullptr, [v] { return std::to_string(v); });
  }
  bool number_float(number_float_t v, const string_t& text) override {
    (void)v;
    return scalar(nullptr, [&text] { return text; });
  }
  bool string(string_t& v) override {
    return scalar(&v, [&v] { return json(v).dump(); });
  }
  bool binary(binary_t&) override {
    return scalar(nullptr, [] { return std::string("null"); });
  }

  bool start_object(std::size_t) override { return open(true); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    if (depth_ == 1) {
      section_ = k == "header"    ? Section::kHeader
                 : k == "route"   ? Section::kRoute
                 : k == "content" ? Section::kContent
                                  : Section::kOther;
    } else if (depth_ == 2 && (section_ == Section::kHeader || section_ == Section::kRoute)) {
      key_ = k;
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    if (!failure) failure = DecodeFailure{DecodeError::kMalformed, "not valid JSON"};
    return false;
  }

  Envelope env;
  bool sawHeader = false, sawRoute = false;
  std::optional<DecodeFailure> failure;

 private:
  enum class Section { kOther, kHeader, kRoute, kContent };

  bool refuse(DecodeError kind, std::string why) {
    failure = DecodeFailure{kind, std::move(why)};
    return false;
  }
  bool isTimestamp() const {
    return depth_ == 2 && section_ == Section::kHeader && key_ == "timestamp";
  }
  // The string field of the header or route named by the current key; nullptr for another.
  std::string* field() {
    if (section_ == Section::kHeader) {
      if (key_ == "msg_id") return &env.header.msgId;
      if (key_ == "parent_msg_id") return &env.header.parentMsgId;
      if (key_ == "resourceversion") return &env.header.resourceVersion;
      if (key_ == "type") return &env.header.type;
    } else if (section_ == Section::kRoute) {
      if (key_ == "source") return &env.route.source;
      if (key_ == "destination") return &env.route.destination;
      if (key_ == "group") return &env.route.group;
      if (key_ == "operation") return &env.route.operation;
      if (key_ == "resource") return &env.route.resource;
    }
    return nullptr;
  }
  const char* sectionName() const { return section_ == Section::kHeader ? "header." : "route."; }
  // A value that is no object or array; `str` its string if it is one, `text()` it written as JSON
  // (made only for the content: the strings of an object's fields are not written again).
  template <class Text>
  bool scalar(std::string* str, Text text) {
    if (depth_ == 0) return refuse(DecodeError::kMalformed, "not a JSON object");
    if (depth_ == 1) {
      if (section_ == Section::kContent) env.content = text();
      if (section_ == Section::kHeader || section_ == Section::kRoute) {
        return refuse(DecodeError::kInvalid,
                      std::string(section_ == Section::kHeader ? "header" : "route") +
                          " is missing or not an object");
      }
      return true;
    }
    if (depth_ == 2 && (section_ == Section::kHeader || section_ == Section::kRoute)) {
      bool isNull = !str && text() == "null";
      if (isTimestamp() && !isNull)
        return refuse(DecodeError::kInvalid, "header.timestamp must be an integer");
      if (section_ == Section::kHeader && key_ == "sync" && !isNull)
        return refuse(DecodeError::kInvalid, "header.sync must be a boolean");
      std::string* f = field();
      if (f && str) {
        *f = std::move(*str);
      } else if (f && !isNull) {
        return refuse(DecodeError::kInvalid, sectionName() + key_ + " must be a string");
      }
    }
    return true;
  }
  bool open(bool object) {
    if (depth_ == 0 && !object) return refuse(DecodeError::kMalformed, "not a JSON object");
    if (depth_ >= kMaxDepth) {
      return refuse(DecodeError::kMalformed,
                    "JSON nests deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    if (depth_ == 1) {
      if (section_ == Section::kContent) contentStart_ = pos_ - 1;
      if (section_ == Section::kHeader || section_ == Section::kRoute) {
        if (!object) {
          return refuse(DecodeError::kInvalid,
                        std::string(section_ == Section::kHeader ? "header" : "route") +
                            " is missing or not an object");
        }
        (section_ == Section::kHeader ? sawHeader : sawRoute) = true;
      }
    } else if (depth_ == 2 && (section_ == Section::kHeader || section_ == Section::kRoute)) {
      if (isTimestamp())
        return refuse(DecodeError::kInvalid, "header.timestamp must be an integer");
      if (section_ == Section::kHeader && key_ == "sync")
        return refuse(DecodeError::kInvalid, "header.sync must be a boolean");
      if (field()) return refuse(DecodeError::kInvalid, sectionName() + key_ + " must be a string");
    }
    ++depth_;
    if (depth_ == 2) key_.clear();
    return true;
  }
  bool close() {
    --depth_;
    if (depth_ == 1 && section_ == Section::kContent)
      env.content.assign(frame_.substr(contentStart_, pos_ - contentStart_));
    if (depth_ == 1) key_.clear();
    return true;
  }

  std::string_view frame_;
  const size_t& pos_;  // bytes of the frame the parser has read
  size_t depth_ = 0;
  Section section_ = Section::kOther;
  std::string key_;  // the current key inside the header or route
  size_t contentStart_ = 0;
};

Decoded decodeJson(std::string_view frame) {
  size_t pos = 0;
  EnvelopeReader reader(frame, pos);
  bool ok = json::sax_parse(CountingIterator(frame.data(), &pos),
                            CountingIterator(frame.data() + frame.size(), &pos), &reader,
                            json::input_format_t::json, /*strict=*/true);
  if (reader.failure) return fail(reader.failure->kind, std::move(reader.failure->reason));
  if (!ok) return fail(DecodeError::kMalformed, "not valid JSON");
  if (!reader.sawHeader) return fail(DecodeError::kInvalid, "header is missing or not an object");
  if (!reader.sawRoute) return fail(DecodeError::kInvalid, "route is missing or not an object");
  return validate(std::move(reader.env));
}

// Checks JSON text in one pass of the parser, no DOM: valid, and nested no deeper than the limit.
struct JsonCheck final : nlohmann::json_sax<json> {
  static constexpr size_t kMaxDepth = validation::JsonLimits{}.maxDepth;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return open(); }
  bool end_object() override { return --depth, true; }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return --depth, true; }
  bool key(string_t&) override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }
  bool open() {
    tooDeep = depth >= kMaxDepth;
    return !tooDeep && ++depth;
  }
  size_t depth = 0;
  bool tooDeep = false;
};

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
  // One pass of the parser: valid JSON, nested no deeper than the limit.
  JsonCheck check;
  bool ok = json::sax_parse(env.content, &check, json::input_format_t::json, /*strict=*/true);
  if (check.tooDeep) {
    return fail(DecodeError::kMalformed, "content: JSON nests deeper than " +
                                             std::to_string(JsonCheck::kMaxDepth) + " levels");
  }
  if (!ok) return fail(DecodeError::kInvalid, "content is not JSON");
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
