// The tunnel message codec: two unsigned LEB128 varints (Go's binary.PutUvarint) and the data.
#include "outpost/stream/frame.h"

namespace outpost::stream {

namespace {

void putUvarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Reads one uvarint at `pos`; nullopt when the bytes end first or it overflows 64 bits.
std::optional<uint64_t> getUvarint(std::string_view in, size_t& pos) {
  uint64_t v = 0;
  for (unsigned i = 0; i < 10; ++i) {
    if (pos >= in.size()) return std::nullopt;
    auto b = static_cast<uint8_t>(in[pos++]);
    if (i == 9 && b > 1) return std::nullopt;  // the 64th bit is the last one
    v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if (b < 0x80) return v;
  }
  return std::nullopt;
}

}  // namespace

const char* typeName(uint64_t type) {
  switch (type) {
    case 0:
      return "LOGS_CONNECT";
    case 1:
      return "EXEC_CONNECT";
    case 2:
      return "METRIC_CONNECT";
    case 3:
      return "DATA";
    case 4:
      return "REMOVE_CONNECT";
    case 5:
      return "CLOSE_CONNECT";
    case 6:
      return "ATTACH_CONNECT";
    default:
      return "UNKNOWN";
  }
}

std::string encodeMessage(uint64_t id, MessageType type, std::string_view data) {
  std::string out;
  out.reserve(data.size() + 4);
  putUvarint(out, id);
  putUvarint(out, static_cast<uint64_t>(type));
  out.append(data);
  return out;
}

core::Result<Message> decodeMessage(std::string_view bytes) {
  size_t pos = 0;
  auto id = getUvarint(bytes, pos);
  if (!id) {
    return core::invalidArgument("tunnel message of " + std::to_string(bytes.size()) +
                                 " bytes: no connect id (a uvarint of at most 64 bits)");
  }
  auto type = getUvarint(bytes, pos);
  if (!type) {
    return core::invalidArgument("tunnel message of " + std::to_string(bytes.size()) +
                                 " bytes: no message type (a uvarint of at most 64 bits)");
  }
  return Message{*id, *type, std::string(bytes.substr(pos))};
}

}  // namespace outpost::stream
