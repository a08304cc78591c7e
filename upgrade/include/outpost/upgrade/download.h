#pragma once
// Fetching a package over http:// or https:// into a file, resuming what an earlier attempt left
// (an HTTP Range request), bounded in size and time. Blocks the calling thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "outpost/core/status.h"

namespace outpost::upgrade {

struct DownloadOptions {
  uint64_t maxBytes = 512ull << 20;  // a larger file is refused (RESOURCE_EXHAUSTED)
  // Each step (connect, TLS, a read) must progress within this; a stalled server is UNAVAILABLE.
  std::chrono::milliseconds ioTimeout{std::chrono::seconds(30)};
  std::string caFile;  // https: trust these CAs instead of the system's (empty: the system's)
  int maxRedirects = 5;
  // Called after each chunk written, with the bytes in the file and the full size when known.
  std::function<void(uint64_t have, std::optional<uint64_t> total)> progress;
  const std::atomic<bool>* cancel = nullptr;  // set: the download stops with CANCELLED
};

// Downloads `url` into `dest`. Bytes already in `dest` are kept and only the rest is asked for
// (Range: bytes=N-); a server that answers the whole file (200) makes it start over. Returns the
// file's size once the server sent all of it. On failure `dest` keeps what arrived, for the next
// attempt.
core::Result<uint64_t> download(const std::string& url, const std::filesystem::path& dest,
                                const DownloadOptions& options);

}  // namespace outpost::upgrade
