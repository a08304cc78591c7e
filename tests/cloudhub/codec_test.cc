#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "outpost/cloudhub/envelope.h"
#include "support/test_util.h"

using namespace outpost::cloudhub;
using nlohmann::json;

namespace {
std::string golden(const std::string& name) {
  const char* dir = std::getenv("OUTPOST_GOLDEN_DIR");
  REQUIRE(dir);
  std::string text = outpost::test::readFile(std::filesystem::path(dir) / name);
  REQUIRE_FALSE(text.empty());
  return text;
}
}  // namespace

TEST_CASE("the golden frames of PROTOCOL.md decode and encode back to the same JSON") {
  for (const char* name : {"keepalive.json", "pod_insert.json", "ack.json", "podpatch.json",
                           "node_query.json", "query_answer.json"}) {
    CAPTURE(name);
    std::string text = golden(name);
    Decoded d = decode(text, Encoding::kJson);
    REQUIRE(d.envelope.has_value());
    CHECK(json::parse(encode(*d.envelope, Encoding::kJson)) == json::parse(text));
  }
}

TEST_CASE("fields decode to the envelope's model, with the content in each of its shapes") {
  auto insert = decode(golden("pod_insert.json"), Encoding::kJson).envelope;
  REQUIRE(insert);
  CHECK(insert->header.msgId == "6a1d9c7e-3f0b-4c2a-8e5d-9b7c6a5f4e31");
  CHECK(insert->header.timestamp == 1714557600123);
  CHECK(insert->header.resourceVersion == "4711");
  CHECK(insert->route.operation == "insert");
  CHECK(insert->route.resource == "default/pod/nginx");
  CHECK(json::parse(*contentObject(*insert))["metadata"]["uid"] ==
        "5c3b2a19-1d2e-4f3a-9b8c-7d6e5f4a3b21");

  auto patch = decode(golden("podpatch.json"), Encoding::kJson).envelope;
  REQUIRE(patch);
  CHECK(json::parse(*contentObject(*patch))["status"]["phase"] ==
        "Running");  // string holding JSON

  auto ping = decode(golden("keepalive.json"), Encoding::kJson).envelope;
  REQUIRE(ping);
  CHECK(ping->content == "\"ping\"");
  CHECK_FALSE(contentObject(*ping).has_value());

  auto query = decode(golden("node_query.json"), Encoding::kJson).envelope;
  REQUIRE(query);
  CHECK(query->content == "null");
}

TEST_CASE("empty optional fields are left out and a trailing newline is accepted") {
  Envelope e;
  e.header.msgId = newMessageId();
  e.header.timestamp = 5;
  e.route.operation = "keepalive";
  setContentString(e, "ping");
  json j = json::parse(encode(e, Encoding::kJson));
  CHECK_FALSE(j["header"].contains("parent_msg_id"));
  CHECK_FALSE(j["header"].contains("resourceversion"));
  CHECK_FALSE(j["header"].contains("sync"));
  CHECK_FALSE(j["route"].contains("source"));
  CHECK(j["content"] == "ping");
  CHECK(decode(encode(e, Encoding::kJson) + "\n", Encoding::kJson).envelope.has_value());
  CHECK(e.header.msgId.size() == 36);
  CHECK(e.header.msgId[14] == '4');
  CHECK(newMessageId() != e.header.msgId);
}

TEST_CASE("message ids are random version-4 UUIDs: lowercase hex, RFC 4122 variant, no repeats") {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    std::string id = newMessageId();
    REQUIRE(id.size() == 36);
    for (size_t c = 0; c < id.size(); ++c) {
      if (c == 8 || c == 13 || c == 18 || c == 23) {
        CHECK(id[c] == '-');
      } else {
        CHECK(std::string_view("0123456789abcdef").find(id[c]) != std::string_view::npos);
      }
    }
    CHECK(id[14] == '4');
    CHECK(std::string_view("89ab").find(id[19]) != std::string_view::npos);
    seen.insert(id);
  }
  CHECK(seen.size() == 2000);
}

TEST_CASE("the protobuf encoding carries the same envelope in fewer bytes") {
  auto env = decode(golden("pod_insert.json"), Encoding::kJson).envelope;
  REQUIRE(env);
  std::string pb = encode(*env, Encoding::kProtobuf);
  CHECK(pb.size() < golden("pod_insert.json").size());
  auto back = decode(pb, Encoding::kProtobuf).envelope;
  REQUIRE(back);
  CHECK(json::parse(encode(*back, Encoding::kJson)) == json::parse(encode(*env, Encoding::kJson)));
  CHECK(decode("\x0a\xff garbage", Encoding::kProtobuf).failure.has_value());
}

TEST_CASE("bad frames are refused with a reason naming what was wrong") {
  struct Case {
    std::string frame;
    DecodeError kind;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"{not json", DecodeError::kMalformed, "not valid JSON"},
      {"[1,2]", DecodeError::kMalformed, "not a JSON object"},
      {R"({"route":{"operation":"insert"},"content":{}})", DecodeError::kInvalid, "header"},
      {R"({"header":{"msg_id":"a"},"content":{}})", DecodeError::kInvalid, "route"},
      {R"({"header":{"timestamp":1},"route":{"operation":"insert"}})", DecodeError::kInvalid,
       "header.msg_id"},
      {R"({"header":{"msg_id":7},"route":{"operation":"insert"}})", DecodeError::kInvalid,
       "msg_id must be a string"},
      {R"({"header":{"msg_id":"a","timestamp":"soon"},"route":{"operation":"insert"}})",
       DecodeError::kInvalid, "timestamp"},
      {R"({"header":{"msg_id":"a","sync":"yes"},"route":{"operation":"insert"}})",
       DecodeError::kInvalid, "sync"},
      {R"({"header":{"msg_id":"a"},"route":{"operation":"explode"}})", DecodeError::kInvalid,
       "explode"},
      {R"({"header":{"msg_id":"a"},"route":{"resource":["x"],"operation":"insert"}})",
       DecodeError::kInvalid, "route.resource"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.frame);
    Decoded d = decode(c.frame, Encoding::kJson);
    REQUIRE(d.failure.has_value());
    CHECK(d.failure->kind == c.kind);
    CHECK(d.failure->reason.find(c.reason) != std::string::npos);
  }
  Decoded big = decode(std::string(2000, ' '), Encoding::kJson, 1000);
  REQUIRE(big.failure);
  CHECK(big.failure->kind == DecodeError::kTooLarge);
  CHECK(big.failure->reason.find("2000 bytes") != std::string::npos);
}

TEST_CASE("an ack names its parent; a batch ack names every msg_id in its content") {
  Envelope single;
  single.header.msgId = "a1";
  single.header.parentMsgId = "m1";
  single.route.operation = "response";
  single.route.resource = "default/pod/web";
  setContentString(single, "OK");
  CHECK(ackedMessageIds(single) == std::vector<std::string>{"m1"});

  auto batch = decode(R"({"header":{"msg_id":"a2","timestamp":1},
      "route":{"group":"resource","operation":"response","resource":"acks"},
      "content":["m1","m2","m3"]})",
                      Encoding::kJson);
  REQUIRE(batch.envelope);
  CHECK(ackedMessageIds(*batch.envelope) == std::vector<std::string>{"m1", "m2", "m3"});
  // The same through the protobuf encoding.
  auto viaProto = decode(encode(*batch.envelope, Encoding::kProtobuf), Encoding::kProtobuf);
  REQUIRE(viaProto.envelope);
  CHECK(ackedMessageIds(*viaProto.envelope) == std::vector<std::string>{"m1", "m2", "m3"});

  // Not acks: another operation, or a response on another resource without a parent.
  Envelope update = single;
  update.route.operation = "update";
  CHECK(ackedMessageIds(update).empty());
  Envelope other = batch.envelope.value();
  other.route.resource = "default/pod/web";
  CHECK(ackedMessageIds(other).empty());
}

TEST_CASE("encoding never throws on bytes that are not UTF-8: they are replaced") {
  // A protobuf frame's strings are not checked for UTF-8, and an ack or an error answer echoes
  // them.
  std::string bad = "default/pod/x\xff\xfe";
  Envelope e;
  e.header.msgId = "m";
  e.route.operation = "error";
  e.route.resource = bad;
  setContentString(e, "refused: \xc3(");
  std::string text;
  CHECK_NOTHROW(text = encode(e, Encoding::kJson));
  auto d = decode(text, Encoding::kJson);
  REQUIRE(d.envelope.has_value());
  CHECK(d.envelope->route.resource == "default/pod/x\xef\xbf\xbd\xef\xbf\xbd");  // U+FFFD twice
}

TEST_CASE(
    "an object's content is kept as the publisher wrote it; nesting past the limit is refused") {
  const std::string object = R"({ "metadata" : {"uid":"u-1", "name": "caf\u00e9"},  "n": 1.50 })";
  std::string frame =
      R"({"header":{"msg_id":"a"},"route":{"operation":"insert"},"content":)" + object + "}\n";
  Decoded d = decode(frame, Encoding::kJson);
  REQUIRE(d.envelope);
  CHECK(d.envelope->content == object);
  CHECK(*contentObject(*d.envelope) == object);
  // Scalars are written as JSON; a string stays a string.
  Decoded s = decode(R"({"header":{"msg_id":"a"},"route":{"operation":"update"},"content":"x\"y"})",
                     Encoding::kJson);
  REQUIRE(s.envelope);
  CHECK(s.envelope->content == R"("x\"y")");
  std::string deep = std::string(100, '[') + std::string(100, ']');
  Decoded ok = decode(R"({"header":{"msg_id":"a"},"route":{"operation":"insert"},"content":)" +
                          std::string(99, '[') + std::string(99, ']') + "}",
                      Encoding::kJson);
  CHECK(ok.envelope.has_value());
  Decoded tooDeep =
      decode(R"({"header":{"msg_id":"a"},"route":{"operation":"insert"},"content":)" + deep + "}",
             Encoding::kJson);
  REQUIRE(tooDeep.failure);
  CHECK(tooDeep.failure->kind == DecodeError::kMalformed);
  CHECK(tooDeep.failure->reason.find("deeper than 100") != std::string::npos);
}
