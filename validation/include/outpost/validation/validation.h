#pragma once
// What a string or an object from outside (the cloud, a broker, the local API, a stored row written
// by an older agent) must look like before any part of Outpost acts on it. Kubernetes' own rules
// for names, keys and paths, and limits on JSON that keep a parser or a serializer from running out
// of stack. A library like core and mqtt-client: it knows no module, and every module may link it.
// docs/security.md lists where each rule is applied.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "outpost/core/status.h"

namespace outpost::validation {

// Kubernetes' limits.
inline constexpr size_t kMaxLabel = 63;       // a DNS-1123 label
inline constexpr size_t kMaxSubdomain = 253;  // a DNS-1123 subdomain, a ConfigMap key
inline constexpr size_t kMaxUid = 128;

// Each check returns OK or INVALID_ARGUMENT whose message names `what` and the rule, e.g.
// "metadata.name \"a/b\": must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.',
// starting and ending with a letter or digit, at most 253 characters)". Values are quoted with
// control characters escaped and cut at 80 characters, so a message is one short log line.

// [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters: namespaces, volume and container names.
core::Status dnsLabel(std::string_view what, std::string_view s);
// DNS-1123 labels joined by '.', at most 253 characters: object names.
core::Status dnsSubdomain(std::string_view what, std::string_view s);
// A uid: [A-Za-z0-9], then [-A-Za-z0-9_.] (at most 128 characters). A UUID is one; so are the
// tokens other control planes use. Never '/', never "." or "..".
core::Status uid(std::string_view what, std::string_view s);
// A ConfigMap or Secret key: [-._a-zA-Z0-9]+, at most 253 characters, not "." or "..".
core::Status configKey(std::string_view what, std::string_view s);
// A relative path inside a directory (subPath, items[].path): not empty, not absolute, no ".."
// element, no NUL, at most 4096 bytes.
core::Status relativePath(std::string_view what, std::string_view s);
// An absolute path with no ".." element and no NUL (hostPath.path).
core::Status absolutePath(std::string_view what, std::string_view s);

// How deep and large a JSON text may be. The default depth is far beyond any Kubernetes object
// (they nest fewer than 20 levels) and far below what the recursive serializer can take.
struct JsonLimits {
  size_t maxDepth = 100;
  size_t maxBytes = 64u << 20;
};
// OK when `text` nests arrays and objects at most maxDepth deep and has at most maxBytes. Scans the
// bytes once (strings are skipped), so a caller can run it before handing the text to a parser.
// Says nothing about whether the text is valid JSON.
core::Status jsonWithin(std::string_view text, const JsonLimits& limits = {});

// What the door reads from a desired object on its way: its metadata.uid and
// metadata.resourceVersion when they are strings.
struct ObjectFacts {
  std::optional<std::string> uid, resourceVersion;
};

// A desired object at the door, before it is stored: `ns`/`type`/`name` from its key, `object` its
// JSON text. One pass of the JSON parser, no DOM. Checks the JSON limits, the key's parts (a
// namespace is a DNS-1123 label or empty, the type [a-z0-9]+, the name a DNS-1123 subdomain), that
// the text is one JSON object, its `metadata` (an object; name and namespace, when present, equal
// the key's; uid a uid), its `kind` (when present, the key's type), ConfigMap and Secret keys, and
// what a Pod's spec turns into host paths or file names (volume and container names, subPath,
// items[].key and items[].path, hostPath.path). The message names the field, e.g.
// "spec.volumes[1].name \"../x\": must be a DNS-1123 label ...".
core::Result<ObjectFacts> desiredObject(std::string_view ns, std::string_view type,
                                        std::string_view name, std::string_view object);
// The facts alone, with no rule but the JSON limits (a delete's object: the key was checked).
core::Result<ObjectFacts> objectFacts(std::string_view object);
// Only the key's parts (what a delete carries).
core::Status desiredKey(std::string_view ns, std::string_view type, std::string_view name);

// `s` with control characters (newline, ESC, ...) escaped as \n, \xNN, cut at `max` bytes with
// "..." appended: for quoting outside strings in a log line or an error message.
std::string printable(std::string_view s, size_t max = 80);

}  // namespace outpost::validation
