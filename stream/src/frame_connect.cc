// A connect message's JSON, as cloudstream marshals EdgedLogsConnection / EdgedExecConnection /
// EdgedMetricsConnection / EdgedAttachConnection: {"url": <Go's url.URL>, "header": {name:
// [values]}, "method": "POST"}. Only url.Path and url.RawQuery are read; the host (edged's
// 127.0.0.1:10350) is not used, since the node serves the request itself.
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>

#include "outpost/stream/cri_log.h"
#include "outpost/stream/frame.h"
#include "outpost/validation/validation.h"

namespace outpost::stream {

namespace {

using nlohmann::json;
using validation::printable;

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Query decoding as Go's url.QueryUnescape: %XX and '+' for a space; a bad escape is an error.
core::Result<std::string> unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      int hi = i + 2 < s.size() ? hexValue(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? hexValue(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return core::invalidArgument("url.RawQuery: bad escape in \"" + printable(s) + "\"");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

using Query = std::multimap<std::string, std::string>;

core::Result<Query> parseQuery(std::string_view raw) {
  Query q;
  size_t start = 0;
  while (start <= raw.size() && !raw.empty()) {
    size_t amp = raw.find('&', start);
    if (amp == std::string_view::npos) amp = raw.size();
    std::string_view pair = raw.substr(start, amp - start);
    start = amp + 1;
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    OUTPOST_ASSIGN_OR_RETURN(std::string key, unescape(pair.substr(0, eq)));
    std::string value;
    if (eq != std::string_view::npos) {
      OUTPOST_ASSIGN_OR_RETURN(value, unescape(pair.substr(eq + 1)));
    }
    q.emplace(std::move(key), std::move(value));
    if (amp == raw.size()) break;
  }
  return q;
}

// One value of a parameter that may appear once.
core::Result<std::optional<std::string>> single(const Query& q, const std::string& key) {
  auto [lo, hi] = q.equal_range(key);
  if (lo == hi) return std::optional<std::string>();
  if (std::next(lo) != hi) return core::invalidArgument("query parameter " + key + " given twice");
  return std::optional<std::string>(lo->second);
}

// Go's strconv.ParseBool, which the apiserver's parameter codec uses; kubelet's exec reads "1".
core::Result<bool> boolParam(const Query& q, const std::string& key) {
  OUTPOST_ASSIGN_OR_RETURN(auto v, single(q, key));
  if (!v) return false;
  static const char* const kTrue[] = {"1", "t", "T", "true", "TRUE", "True"};
  static const char* const kFalse[] = {"0", "f", "F", "false", "FALSE", "False"};
  for (const char* t : kTrue)
    if (*v == t) return true;
  for (const char* f : kFalse)
    if (*v == f) return false;
  return core::invalidArgument("query parameter " + key + " \"" + printable(*v) +
                               "\": must be true or false");
}

core::Result<std::optional<int64_t>> intParam(const Query& q, const std::string& key, int64_t min) {
  OUTPOST_ASSIGN_OR_RETURN(auto v, single(q, key));
  if (!v) return std::optional<int64_t>();
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (v->empty() || ec != std::errc() || end != v->data() + v->size() || n < min) {
    return core::invalidArgument("query parameter " + key + " \"" + printable(*v) +
                                 "\": must be an integer of at least " + std::to_string(min));
  }
  return std::optional<int64_t>(n);
}

core::Status onlyKeys(const Query& q, std::initializer_list<std::string_view> allowed,
                      std::string_view endpoint) {
  for (const auto& [key, value] : q) {
    bool ok = false;
    for (auto a : allowed) ok = ok || key == a;
    if (!ok) {
      return core::invalidArgument("query parameter \"" + printable(key) + "\" is not one that " +
                                   std::string(endpoint) + " takes");
    }
  }
  return core::okStatus();
}

core::Status containerRef(const std::vector<std::string_view>& parts, ContainerRef& ref) {
  OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("namespace", parts[1]));
  OUTPOST_RETURN_IF_ERROR(validation::dnsSubdomain("pod", parts[2]));
  OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("container", parts[3]));
  ref = {std::string(parts[1]), std::string(parts[2]), std::string(parts[3])};
  return core::okStatus();
}

core::Status logOptions(const Query& q, ConnectRequest& r) {
  OUTPOST_RETURN_IF_ERROR(
      onlyKeys(q,
               {"follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime",
                "limitBytes", "container", "insecureSkipTLSVerifyBackend"},
               "/containerLogs"));
  OUTPOST_ASSIGN_OR_RETURN(r.logs.follow, boolParam(q, "follow"));
  OUTPOST_ASSIGN_OR_RETURN(r.logs.previous, boolParam(q, "previous"));
  OUTPOST_ASSIGN_OR_RETURN(r.logs.timestamps, boolParam(q, "timestamps"));
  OUTPOST_RETURN_IF_ERROR(boolParam(q, "insecureSkipTLSVerifyBackend").status());
  OUTPOST_ASSIGN_OR_RETURN(r.logs.tailLines, intParam(q, "tailLines", 0));
  OUTPOST_ASSIGN_OR_RETURN(r.logs.sinceSeconds, intParam(q, "sinceSeconds", 1));
  OUTPOST_ASSIGN_OR_RETURN(r.logs.limitBytes, intParam(q, "limitBytes", 1));
  OUTPOST_ASSIGN_OR_RETURN(auto sinceTime, single(q, "sinceTime"));
  if (sinceTime) {
    long long t = rfc3339Seconds(*sinceTime);
    if (t >= 0) r.logs.sinceUnixSeconds = t;
    if (!r.logs.sinceUnixSeconds) {
      return core::invalidArgument("query parameter sinceTime \"" + printable(*sinceTime) +
                                   "\": must be an RFC 3339 time");
    }
  }
  if (r.logs.sinceSeconds && r.logs.sinceUnixSeconds) {
    return core::invalidArgument("query parameters sinceSeconds and sinceTime exclude each other");
  }
  OUTPOST_ASSIGN_OR_RETURN(auto container, single(q, "container"));
  if (container && *container != r.ref.container) {
    return core::invalidArgument("query parameter container \"" + printable(*container) +
                                 "\" is not the path's container " + r.ref.container);
  }
  return core::okStatus();
}

core::Status streamOptions(const Query& q, ConnectRequest& r, bool exec) {
  if (exec) {
    OUTPOST_RETURN_IF_ERROR(
        onlyKeys(q, {"command", "stdin", "stdout", "stderr", "tty", "container"}, "/exec"));
    auto [lo, hi] = q.equal_range("command");
    for (auto it = lo; it != hi; ++it) {
      if (it->second.empty() || it->second.size() > 4096 ||
          it->second.find('\0') != std::string::npos) {
        return core::invalidArgument(
            "query parameter command: each argument must have 1 to 4096 bytes and no NUL");
      }
      r.command.push_back(it->second);
    }
    if (r.command.empty()) return core::invalidArgument("/exec needs a command");
    if (r.command.size() > kMaxCommandArgs) {
      return core::invalidArgument("query parameter command: more than " +
                                   std::to_string(kMaxCommandArgs) + " arguments");
    }
  } else {
    OUTPOST_RETURN_IF_ERROR(
        onlyKeys(q, {"stdin", "stdout", "stderr", "tty", "container"}, "/attach"));
  }
  OUTPOST_ASSIGN_OR_RETURN(r.stdin, boolParam(q, "stdin"));
  OUTPOST_ASSIGN_OR_RETURN(r.stdout, boolParam(q, "stdout"));
  OUTPOST_ASSIGN_OR_RETURN(r.stderr, boolParam(q, "stderr"));
  OUTPOST_ASSIGN_OR_RETURN(r.tty, boolParam(q, "tty"));
  // A TTY has one output stream: stderr is dropped first, as the kubelet does, so that
  // "stderr=1&tty=1" is refused below rather than accepted with no stream at all.
  if (r.tty && r.stderr) r.stderr = false;
  if (!r.stdin && !r.stdout && !r.stderr) {
    return core::invalidArgument(
        "at least one of stdin, stdout and stderr must be true (stderr does not count with a tty)");
  }
  OUTPOST_ASSIGN_OR_RETURN(auto container, single(q, "container"));
  if (container && *container != r.ref.container) {
    return core::invalidArgument("query parameter container \"" + printable(*container) +
                                 "\" is not the path's container " + r.ref.container);
  }
  return core::okStatus();
}

core::Status readHeaders(const json& doc, ConnectRequest& r) {
  auto it = doc.find("header");
  if (it == doc.end() || it->is_null()) return core::okStatus();
  if (!it->is_object()) return core::invalidArgument("header: must be an object");
  for (const auto& [name, values] : it->items()) {
    if (name.empty() || name.size() > 256 ||
        name.find_first_of(" \t\r\n:\0", 0, 6) != std::string::npos) {
      return core::invalidArgument("header \"" + printable(name) + "\": not a header name");
    }
    if (!values.is_array()) {
      return core::invalidArgument("header " + printable(name) + ": must be a list of strings");
    }
    for (const auto& v : values) {
      if (!v.is_string()) {
        return core::invalidArgument("header " + printable(name) + ": must be a list of strings");
      }
      const auto& s = v.get_ref<const std::string&>();
      if (s.find_first_of("\r\n\0", 0, 3) != std::string::npos) {
        return core::invalidArgument("header " + printable(name) + ": a value holds CR, LF or NUL");
      }
      if (r.headers.size() >= kMaxHeaders) {
        return core::invalidArgument("header: more than " + std::to_string(kMaxHeaders) +
                                     " values");
      }
      r.headers.emplace_back(name, s);
    }
  }
  return core::okStatus();
}

}  // namespace

core::Result<ConnectRequest> parseConnect(MessageType type, std::string_view text) {
  if (text.size() > kMaxConnectBytes) {
    return core::invalidArgument("connect message of " + std::to_string(text.size()) +
                                 " bytes: more than " + std::to_string(kMaxConnectBytes));
  }
  OUTPOST_RETURN_IF_ERROR(
      validation::jsonWithin(text, {.maxDepth = 8, .maxBytes = kMaxConnectBytes}));
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return core::invalidArgument("connect message: not a JSON object");
  }
  auto url = doc.find("url");
  if (url == doc.end() || !url->is_object()) {
    return core::invalidArgument("connect message: no url object");
  }
  auto str = [&](const char* key) -> core::Result<std::string> {
    auto f = url->find(key);
    if (f == url->end() || f->is_null()) return std::string();
    if (!f->is_string()) return core::invalidArgument(std::string("url.") + key + ": not a string");
    return f->get<std::string>();
  };
  OUTPOST_ASSIGN_OR_RETURN(std::string path, str("Path"));
  OUTPOST_ASSIGN_OR_RETURN(std::string rawPath, str("RawPath"));
  OUTPOST_ASSIGN_OR_RETURN(std::string rawQuery, str("RawQuery"));
  OUTPOST_ASSIGN_OR_RETURN(std::string opaque, str("Opaque"));
  if (!rawPath.empty() || !opaque.empty()) {
    return core::invalidArgument("url: an escaped or opaque path is not one of the served paths");
  }
  ConnectRequest r;
  auto parts = path.empty() || path[0] != '/' ? std::vector<std::string_view>{} : splitPath(path);
  auto badPath = [&] {
    return core::invalidArgument("url.Path \"" + printable(path) +
                                 "\": not a served endpoint (/containerLogs/NS/POD/CONTAINER, "
                                 "/exec/NS/POD/CONTAINER, /attach/NS/POD/CONTAINER, "
                                 "/metrics/resource)");
  };
  OUTPOST_ASSIGN_OR_RETURN(Query query, parseQuery(rawQuery));
  switch (type) {
    case MessageType::kLogsConnect:
      if (parts.size() != 4 || parts[0] != "containerLogs") return badPath();
      r.endpoint = Endpoint::kContainerLogs;
      OUTPOST_RETURN_IF_ERROR(containerRef(parts, r.ref));
      OUTPOST_RETURN_IF_ERROR(logOptions(query, r));
      break;
    case MessageType::kExecConnect:
    case MessageType::kAttachConnect: {
      bool exec = type == MessageType::kExecConnect;
      if (parts.size() != 4 || parts[0] != (exec ? "exec" : "attach")) return badPath();
      r.endpoint = exec ? Endpoint::kExec : Endpoint::kAttach;
      OUTPOST_RETURN_IF_ERROR(containerRef(parts, r.ref));
      OUTPOST_RETURN_IF_ERROR(streamOptions(query, r, exec));
      auto m = doc.find("method");
      r.method = m != doc.end() && m->is_string() ? m->get<std::string>() : "POST";
      if (r.method != "GET" && r.method != "POST") {
        return core::invalidArgument("method \"" + printable(r.method) + "\": must be GET or POST");
      }
      break;
    }
    case MessageType::kMetricConnect:
      if (path != "/metrics/resource") return badPath();
      r.endpoint = Endpoint::kMetricsResource;
      OUTPOST_RETURN_IF_ERROR(onlyKeys(query, {}, "/metrics/resource"));
      break;
    default:
      return core::invalidArgument(std::string("message type ") +
                                   typeName(static_cast<uint64_t>(type)) +
                                   " is not a connect message");
  }
  OUTPOST_RETURN_IF_ERROR(readHeaders(doc, r));
  return r;
}

}  // namespace outpost::stream
