// The rules of PROTOCOL.md §2 that need no broker: names, values, types, and the version rule.
#include "outpost/twin/rules.h"

#include <doctest/doctest.h>

#include <string>

using namespace outpost;
using namespace outpost::twin;
using metadb::VersionVector;

TEST_CASE("property names use the allowed characters, 1 to 128 of them") {
  CHECK(validPropertyName("temperature"));
  CHECK(validPropertyName("a-b_c.d,e:f/g@h#i"));
  CHECK(validPropertyName(std::string(128, 'x')));
  CHECK_FALSE(validPropertyName(""));
  CHECK_FALSE(validPropertyName(std::string(129, 'x')));
  CHECK_FALSE(validPropertyName("with space"));
  CHECK_FALSE(validPropertyName("quote\""));
  CHECK_FALSE(validPropertyName("plus+"));
}

TEST_CASE("property values use the same characters, up to 512, and may be empty") {
  CHECK(validPropertyValue(""));
  CHECK(validPropertyValue("21.5"));
  CHECK(validPropertyValue(std::string(512, 'v')));
  CHECK_FALSE(validPropertyValue(std::string(513, 'v')));
  CHECK_FALSE(validPropertyValue("two words"));
  CHECK_FALSE(validPropertyValue("{}"));
}

TEST_CASE("types are string, int, integer, float, boolean, and a value must parse as its type") {
  for (const char* t : {"string", "int", "integer", "float", "boolean"}) CHECK(validType(t));
  CHECK_FALSE(validType("double"));
  CHECK_FALSE(validType("deleted"));
  CHECK_FALSE(validType(""));

  CHECK(valueMatchesType("anything", "string"));
  CHECK(valueMatchesType("", "string"));
  CHECK(valueMatchesType("21", "int"));
  CHECK(valueMatchesType("-7", "integer"));
  CHECK(valueMatchesType("+7", "int"));
  CHECK(valueMatchesType("9223372036854775807", "int"));
  CHECK_FALSE(valueMatchesType("9223372036854775808", "int"));
  CHECK_FALSE(valueMatchesType("2.5", "int"));
  CHECK_FALSE(valueMatchesType("", "int"));
  CHECK_FALSE(valueMatchesType("12a", "int"));
  CHECK(valueMatchesType("2.5", "float"));
  CHECK(valueMatchesType("-1e3", "float"));
  CHECK(valueMatchesType("3", "float"));
  CHECK_FALSE(valueMatchesType("nan", "float"));
  CHECK_FALSE(valueMatchesType("1e999", "float"));
  CHECK_FALSE(valueMatchesType("", "float"));
  CHECK(valueMatchesType("true", "boolean"));
  CHECK(valueMatchesType("False", "boolean"));
  CHECK(valueMatchesType("1", "boolean"));
  CHECK_FALSE(valueMatchesType("yes", "boolean"));
  CHECK_FALSE(valueMatchesType("x", "nosuchtype"));
}

TEST_CASE("a cloud update is accepted when neither counter goes backwards") {
  VersionVector stored{3, 5};
  CHECK(decideCloudUpdate(stored, VersionVector{4, 5}) == CloudVerdict::kAccept);  // cloud moved
  CHECK(decideCloudUpdate(stored, VersionVector{3, 5}) == CloudVerdict::kAccept);  // a resend
  CHECK(decideCloudUpdate(stored, VersionVector{9, 9}) == CloudVerdict::kAccept);
  CHECK(decideCloudUpdate({0, 0}, VersionVector{1, 0}) == CloudVerdict::kAccept);  // new property
}

TEST_CASE("a cloud update is rejected when it has not seen the edge's latest change") {
  VersionVector stored{3, 5};
  CHECK(decideCloudUpdate(stored, VersionVector{4, 4}) == CloudVerdict::kReject);  // edge behind
  CHECK(decideCloudUpdate(stored, VersionVector{2, 5}) == CloudVerdict::kReject);  // cloud behind
  CHECK(decideCloudUpdate(stored, VersionVector{2, 4}) == CloudVerdict::kReject);
}

TEST_CASE("a cloud update without versions is rejected") {
  CHECK(decideCloudUpdate({0, 0}, std::nullopt) == CloudVerdict::kReject);
  CHECK(decideCloudUpdate({3, 5}, std::nullopt) == CloudVerdict::kReject);
}
