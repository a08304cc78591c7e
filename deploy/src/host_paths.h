#pragma once
// HostPaths: the one place that turns a pod's uid, volume and container names, ConfigMap keys and
// items[].path into paths on the host, and the only code that creates, writes or removes files
// there. The agent runs as root and these names come from the cloud (or from a store an older
// agent wrote), and containers can write into emptyDir volumes, so:
//   - every name is checked again here (a uid, a DNS label, a relative path), and a path is only
//     ever <stateDir>/pods/<uid>/... , checked to stay under the state dir;
//   - below the state dir every step is opened relative to its parent's descriptor with
//     O_NOFOLLOW: a symlink planted inside a volume is never followed, for writing or removal;
//   - removal unlinks entry by entry on directory descriptors and never crosses a mount point.
//
// Layout: <stateDir>/pods/<uid>/volumes/<volume>/...  and  <stateDir>/pods/<uid>/logs/<container>/

#include <sys/types.h>

#include <set>
#include <string>
#include <string_view>

#include "outpost/core/status.h"

namespace outpost::deploy {

// An open file descriptor, closed when it goes.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// A volume directory of a pod, open: what is written or pruned in it stays in it.
class VolumeDir {
 public:
  VolumeDir(Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  // Writes `data` at `rel` (a relative path without ".."; missing directories are made 0755),
  // replacing the file atomically with mode `mode`, or only setting the mode when the content is
  // the same. A symlink or a directory in the way is an error, never followed or replaced.
  core::Status write(std::string_view rel, std::string_view data, mode_t mode);
  // Removes every top-level entry (a subtree entirely) that no write() through this object made
  // or rewrote: what a ConfigMap no longer holds.
  core::Status pruneUnwritten() const;

 private:
  Fd fd_;
  std::string path_;
  std::set<std::string> written_;  // top-level names write() made
};

class HostPaths {
 public:
  explicit HostPaths(std::string stateDir) : stateDir_(std::move(stateDir)) {}
  const std::string& stateDir() const { return stateDir_; }

  // Paths only (nothing on disk is touched). INVALID_ARGUMENT when `uid` is not a uid.
  core::Result<std::string> podDir(std::string_view uid) const;
  core::Result<std::string> logDir(std::string_view uid) const;

  // Makes <pod>/logs, and <pod>/logs/<container> when `container` is not empty (a DNS label).
  core::Status makeLogDir(std::string_view uid, std::string_view container) const;
  // Makes (or opens) <pod>/volumes/<volume> (a DNS label) with `mode`; an existing one is given
  // `mode` too when `enforceMode` (an emptyDir keeps what its containers made of it).
  core::Result<VolumeDir> openVolume(std::string_view uid, std::string_view volume, mode_t mode,
                                     bool enforceMode = true) const;
  // Removes <stateDir>/pods/<uid> and everything in it; OK when it does not exist.
  core::Status removePod(std::string_view uid) const;

 private:
  // <stateDir>/pods/<uid> opened, each step made when missing.
  core::Result<Fd> openPodDir(std::string_view uid) const;
  std::string stateDir_;
};

// `rel` (a relative path without "..") inside the existing directory `base`, for a subPath mount:
// each element is looked up without following symlinks, and a symlink anywhere is refused (a
// container may have planted it to point the mount elsewhere). Missing elements are made as
// directories (0755) when `create`, NOT_FOUND otherwise. Returns `base`/`rel`.
core::Result<std::string> pathInside(const std::string& base, std::string_view rel, bool create);

// True when `path` is `base` or below it, comparing the elements of both lexically (after
// removing "." and resolving ".."; symlinks are not looked at).
bool lexicallyWithin(const std::string& base, const std::string& path);

}  // namespace outpost::deploy
