#pragma once
// The rules of PROTOCOL.md §2 that do not need a broker: what a name, a value and a type may be,
// and whether a cloud update of one side of a property wins over what the edge holds.

#include <cstddef>
#include <optional>
#include <string_view>

#include "outpost/metadb/types.h"

namespace outpost::twin {

// KubeEdge's bounds: a property name up to 128 characters, a value up to 512.
inline constexpr size_t kMaxPropertyName = 128;
inline constexpr size_t kDefaultMaxValueBytes = 512;

// ^[a-zA-Z0-9-_.,:/@#]{1,128}$. A name is a column of the store's key (device id, name), never a
// part of a topic or of a key built from strings.
bool validPropertyName(std::string_view name);
// The same characters, up to `maxBytes` (TwinOptions::maxValueBytes); empty is allowed.
bool validPropertyValue(std::string_view value, size_t maxBytes = kDefaultMaxValueBytes);
// Only the characters (no length): to tell a value too long from a value with a bad character.
bool validPropertyChars(std::string_view value);
// What the rules above say, for an error message.
inline constexpr std::string_view kPropertyNameRule =
    "must be 1 to 128 of letters, digits and -_.,:/@#";
inline constexpr std::string_view kPropertyValueRule = "must be letters, digits and -_.,:/@# only";
// string, int, integer, float, boolean.
bool validType(std::string_view type);
// Whether `value` parses as `type` (int/integer: a 64-bit integer; float: a finite number; boolean:
// as Go's strconv.ParseBool; string: anything). An unknown type fits nothing.
bool valueMatchesType(std::string_view value, std::string_view type);

// The internal type of a property a device deleted: kept so the cloud hears of the deletion.
inline constexpr std::string_view kDeletedType = "deleted";

enum class CloudVerdict {
  kAccept,  // the cloud's value and versions replace the edge's
  kReject,  // keep the edge's side and send it back to the cloud
};

// §2: a cloud update of one side is accepted only if it carries versions and neither counter goes
// backwards against the side's stored versions.
CloudVerdict decideCloudUpdate(const metadb::VersionVector& stored,
                               const std::optional<metadb::VersionVector>& incoming);

}  // namespace outpost::twin
