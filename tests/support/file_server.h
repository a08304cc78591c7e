#pragma once
// A plain HTTP/1.1 file server on loopback, port 0, for the upgrade's downloads: GET of the files
// it was given, with Range requests (206, 416) as a package host answers them, one connection per
// request. It can cut a response after some bytes of its body, or ignore Range, and records each
// request's Range header.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace outpost::test {

class FileServer {
 public:
  FileServer();
  ~FileServer();
  FileServer(const FileServer&) = delete;
  FileServer& operator=(const FileServer&) = delete;

  int port() const;
  std::string url(const std::string& path) const;  // http://127.0.0.1:<port><path>

  // Serves `body` at `path` (e.g. "/outpost.deb").
  void put(const std::string& path, std::string body);
  // The next response's connection closes after this many bytes of its body (once).
  void cutNextAfter(uint64_t bytes);
  // Answers Range requests with the whole file (200), as a server without range support does.
  void setIgnoreRange(bool on);
  // Answers `path` with a redirect (302) to `location`.
  void redirect(const std::string& path, const std::string& location);

  // The Range header of each request so far, in order ("" when there was none).
  std::vector<std::string> ranges() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::test
