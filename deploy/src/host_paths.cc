#include "host_paths.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "outpost/validation/validation.h"

namespace outpost::deploy {
namespace {

namespace fs = std::filesystem;

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
// The temporary file a projected file is written to before it replaces the real one. '~' is not
// a ConfigMap key character, so no key is ever named so.
constexpr const char* kTmpName = ".outpost~tmp";
// How many directories a removal holds open at once; a deeper tree is moved up in steps.
constexpr size_t kMaxDepth = 64;

// True when the directory open at `fd` is the root of a mount: another file system (its device
// differs from `dev`), or a bind mount of the same one, which only the kernel's mount-root
// attribute tells apart (statx, Linux 5.8).
bool mountRoot(int fd, dev_t dev, const struct stat& st) {
  if (st.st_dev != dev) return true;
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, 0, &stx) != 0) return false;
  return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
         (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

core::Status sysError(const std::string& what, int err) {
  std::string m = what + ": " + std::strerror(err);
  if (err == ELOOP || err == ENOTDIR || err == EISDIR || err == EXDEV || err == ENOTEMPTY)
    return core::failedPrecondition(std::move(m));
  return core::internalError(std::move(m));
}

// The elements of a relative path, "." and empty ones left out; nullopt when one is "..".
std::optional<std::vector<std::string>> elements(std::string_view rel) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= rel.size()) {
    size_t j = rel.find('/', i);
    if (j == std::string_view::npos) j = rel.size();
    std::string_view e = rel.substr(i, j - i);
    if (e == "..") return std::nullopt;
    if (!e.empty() && e != ".") out.emplace_back(e);
    i = j + 1;
  }
  return out;
}

std::string inQuotes(std::string_view s) {
  // Built in parts: GCC 12's -Wrestrict misfires at -O2 on "literal" + std::string.
  std::string out = validation::printable(s);
  out.insert(out.begin(), '"');
  out += '"';
  return out;
}

// The directory `name` in `dirFd`, made (with `mode`) when missing and `create`; a symlink or
// anything else in its place is an error.
core::Result<Fd> openDirAt(int dirFd, const std::string& name, bool create, mode_t mode,
                           const std::string& shown) {
  if (create && ::mkdirat(dirFd, name.c_str(), mode) != 0 && errno != EEXIST)
    return sysError("creating " + shown, errno);
  Fd fd(::openat(dirFd, name.c_str(), kDirFlags));
  if (!fd) {
    int err = errno;
    struct stat st {};
    if (::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
      return core::failedPrecondition(shown + " is a symbolic link, not followed");
    return sysError("opening " + shown, err);
  }
  return fd;
}

// The state dir itself comes from the node's configuration: made when missing, and opened as it
// is (an administrator may well have made it a symlink).
core::Result<Fd> openStateDir(const std::string& stateDir) {
  std::error_code ec;
  fs::create_directories(stateDir, ec);
  if (ec) return core::internalError("creating " + stateDir + ": " + ec.message());
  Fd fd(::open(stateDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return sysError("opening " + stateDir, errno);
  return fd;
}

// Empties the directory `root` (on device `dev`) without following symlinks or crossing mount
// points. Depth-first with an explicit stack of open directories; a subdirectory below kMaxDepth
// is moved up into `root` first and emptied in a later round, so no more than kMaxDepth
// descriptors are ever open however deep a container nested its directories.
class TreeEmptier {
 public:
  TreeEmptier(int root, dev_t dev, const std::string& shown)
      : root_(root), dev_(dev), shown_(shown) {}

  core::Status run() {
    for (int round = 0; round < 100000; ++round) {
      movedUp_ = false;
      failed_ = core::okStatus();
      OUTPOST_RETURN_IF_ERROR(openRoot());
      while (!stack_.empty() && failed_.isOk()) next();
      for (auto& l : stack_) ::closedir(l.dir);
      stack_.clear();
      OUTPOST_RETURN_IF_ERROR(failed_);
      if (!movedUp_) return core::okStatus();
    }
    return core::internalError("removing " + shown_ + ": too many rounds");
  }

 private:
  struct Level {
    DIR* dir = nullptr;
    std::string name;  // in the level above
  };

  core::Status openRoot() {
    int rootCopy = ::fcntl(root_, F_DUPFD_CLOEXEC, 0);
    if (rootCopy < 0) return sysError("reading " + shown_, errno);
    DIR* rootDir = ::fdopendir(rootCopy);
    if (!rootDir) {
      ::close(rootCopy);
      return sysError("reading " + shown_, errno);
    }
    ::rewinddir(rootDir);  // the copy shares the position the previous round left at the end
    stack_.push_back({rootDir, ""});
    return core::okStatus();
  }

  // The next entry of the innermost directory; at its end, that directory goes.
  void next() {
    errno = 0;
    struct dirent* e = ::readdir(stack_.back().dir);
    if (!e) {
      if (errno != 0) {
        failed_ = sysError("reading " + shown_, errno);
      } else {
        leave();
      }
      return;
    }
    std::string name = e->d_name;
    if (name == "." || name == "..") return;
    int fd = ::dirfd(stack_.back().dir);
    if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) {
      if (::unlinkat(fd, name.c_str(), 0) == 0 || errno == ENOENT) return;
      if (errno != EISDIR) {
        failed_ = sysError("removing " + inQuotes(name) + " in " + shown_, errno);
        return;
      }
      // It became a directory since it was listed: emptied below.
    }
    enter(fd, std::move(name));
  }

  // The innermost directory is empty: closed and removed from the one above.
  void leave() {
    Level done = std::move(stack_.back());
    stack_.pop_back();
    ::closedir(done.dir);
    if (!stack_.empty() &&
        ::unlinkat(::dirfd(stack_.back().dir), done.name.c_str(), AT_REMOVEDIR) != 0 &&
        errno != ENOENT) {
      failed_ = sysError("removing a directory in " + shown_, errno);
    }
  }

  // The entry `name` of `fd`, listed as a directory (or of unknown type): opened and pushed, or
  // moved up into the root when too deep; removed when it is not a directory after all.
  void enter(int fd, std::string name) {
    Fd child(::openat(fd, name.c_str(), kDirFlags));
    if (!child) {
      // Not a directory after all (a symlink, a file): the entry itself goes.
      if (errno == ENOTDIR || errno == ELOOP) {
        if (::unlinkat(fd, name.c_str(), 0) != 0 && errno != ENOENT)
          failed_ = sysError("removing " + inQuotes(name) + " in " + shown_, errno);
      } else if (errno != ENOENT) {
        failed_ = sysError("opening " + inQuotes(name) + " in " + shown_, errno);
      }
      return;
    }
    struct stat st {};
    if (::fstat(child.get(), &st) != 0) {
      failed_ = sysError("reading " + inQuotes(name) + " in " + shown_, errno);
      return;
    }
    if (mountRoot(child.get(), dev_, st)) {
      failed_ = core::failedPrecondition(inQuotes(name) + " in " + shown_ +
                                         " is a mount point: left in place");
      return;
    }
    if (stack_.size() >= kMaxDepth) {
      moveUp(fd, name);
      return;
    }
    DIR* dir = ::fdopendir(child.get());
    if (!dir) {
      failed_ = sysError("reading " + inQuotes(name) + " in " + shown_, errno);
      return;
    }
    child.release();
    stack_.push_back({dir, std::move(name)});
  }

  // Too deep: moved up into the root, emptied in the next round.
  void moveUp(int fd, const std::string& name) {
    while (true) {
      std::string up = ".outpost~deep" + std::to_string(moved_++);
      if (::renameat2(fd, name.c_str(), root_, up.c_str(), RENAME_NOREPLACE) == 0) break;
      if (errno != EEXIST) {
        failed_ = sysError("moving a deep directory up in " + shown_, errno);
        break;
      }
    }
    movedUp_ = true;
  }

  int root_;
  dev_t dev_;
  std::string shown_;
  std::vector<Level> stack_;
  unsigned moved_ = 0;
  bool movedUp_ = false;
  core::Status failed_ = core::okStatus();
};

core::Status emptyTree(int root, dev_t dev, const std::string& shown) {
  return TreeEmptier(root, dev, shown).run();
}

// Removes the entry `name` of `dirFd` (a subtree entirely), on device `dev`; OK when absent.
core::Status removeAt(int dirFd, const std::string& name, dev_t dev, const std::string& shown) {
  struct stat st {};
  if (::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return core::okStatus();
    return sysError("reading " + shown, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dirFd, name.c_str(), 0) != 0 && errno != ENOENT)
      return sysError("removing " + shown, errno);
    return core::okStatus();
  }
  OUTPOST_ASSIGN_OR_RETURN(Fd dir, openDirAt(dirFd, name, false, 0, shown));
  if (::fstat(dir.get(), &st) != 0) return sysError("reading " + shown, errno);
  if (mountRoot(dir.get(), dev, st))
    return core::failedPrecondition(shown + " is a mount point: left in place");
  OUTPOST_RETURN_IF_ERROR(emptyTree(dir.get(), dev, shown));
  if (::unlinkat(dirFd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return sysError("removing " + shown, errno);
  return core::okStatus();
}

core::Status writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError("writing", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return core::okStatus();
}

// True when the regular file `name` in `dirFd` holds exactly `data`.
bool sameContent(int dirFd, const std::string& name, std::string_view data) {
  Fd fd(::openat(dirFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return false;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<size_t>(st.st_size) != data.size())
    return false;
  std::string buf(data.size(), '\0');
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::read(fd.get(), buf.data() + got, buf.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return buf == data;
}

}  // namespace

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

bool lexicallyWithin(const std::string& base, const std::string& path) {
  auto trimmed = [](const std::string& p) {
    fs::path n = fs::path(p).lexically_normal();
    std::vector<fs::path> out(n.begin(), n.end());
    if (!out.empty() && out.back().empty()) out.pop_back();  // a trailing '/'
    return out;
  };
  auto b = trimmed(base), p = trimmed(path);
  if (b.empty() || p.size() < b.size()) return false;
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] != p[i]) return false;
  }
  for (size_t i = b.size(); i < p.size(); ++i) {
    if (p[i] == "..") return false;
  }
  return true;
}

core::Result<std::string> HostPaths::podDir(std::string_view uid) const {
  OUTPOST_RETURN_IF_ERROR(validation::uid("pod uid", uid));
  std::string dir = (fs::path(stateDir_) / "pods" / std::string(uid)).string();
  if (!lexicallyWithin(stateDir_, dir))
    return core::internalError("pod directory " + dir + " is not under " + stateDir_);
  return dir;
}

core::Result<std::string> HostPaths::logDir(std::string_view uid) const {
  OUTPOST_ASSIGN_OR_RETURN(auto dir, podDir(uid));
  return dir + "/logs";
}

core::Result<Fd> HostPaths::openPodDir(std::string_view uid) const {
  OUTPOST_ASSIGN_OR_RETURN(auto shown, podDir(uid));
  OUTPOST_ASSIGN_OR_RETURN(Fd state, openStateDir(stateDir_));
  OUTPOST_ASSIGN_OR_RETURN(Fd pods,
                           openDirAt(state.get(), "pods", true, 0755, stateDir_ + "/pods"));
  return openDirAt(pods.get(), std::string(uid), true, 0755, shown);
}

core::Status HostPaths::makeLogDir(std::string_view uid, std::string_view container) const {
  if (!container.empty())
    OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("container name", container));
  OUTPOST_ASSIGN_OR_RETURN(auto shown, logDir(uid));
  OUTPOST_ASSIGN_OR_RETURN(Fd pod, openPodDir(uid));
  OUTPOST_ASSIGN_OR_RETURN(Fd logs, openDirAt(pod.get(), "logs", true, 0755, shown));
  if (container.empty()) return core::okStatus();
  std::string name(container);
  return openDirAt(logs.get(), name, true, 0755, shown + "/" + name).status();
}

core::Result<VolumeDir> HostPaths::openVolume(std::string_view uid, std::string_view volume,
                                              mode_t mode, bool enforceMode) const {
  OUTPOST_RETURN_IF_ERROR(validation::dnsLabel("volume name", volume));
  OUTPOST_ASSIGN_OR_RETURN(auto pod, podDir(uid));
  std::string name(volume);
  std::string shown = pod + "/volumes/" + name;
  if (!lexicallyWithin(stateDir_, shown))
    return core::internalError("volume directory " + shown + " is not under " + stateDir_);
  OUTPOST_ASSIGN_OR_RETURN(Fd podFd, openPodDir(uid));
  OUTPOST_ASSIGN_OR_RETURN(Fd volumes,
                           openDirAt(podFd.get(), "volumes", true, 0755, pod + "/volumes"));
  OUTPOST_ASSIGN_OR_RETURN(Fd dir, openDirAt(volumes.get(), name, true, mode, shown));
  if (enforceMode && ::fchmod(dir.get(), mode) != 0)
    return sysError("setting the mode of " + shown, errno);
  return VolumeDir(std::move(dir), shown);
}

core::Status HostPaths::removePod(std::string_view uid) const {
  OUTPOST_ASSIGN_OR_RETURN(auto shown, podDir(uid));
  Fd state(::open(stateDir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!state) return errno == ENOENT ? core::okStatus() : sysError("opening " + stateDir_, errno);
  Fd pods(::openat(state.get(), "pods", kDirFlags));
  if (!pods) {
    if (errno == ENOENT) return core::okStatus();
    return sysError("opening " + stateDir_ + "/pods", errno);
  }
  struct stat st {};
  if (::fstat(pods.get(), &st) != 0) return sysError("reading " + stateDir_ + "/pods", errno);
  return removeAt(pods.get(), std::string(uid), st.st_dev, shown);
}

core::Status VolumeDir::write(std::string_view rel, std::string_view data, mode_t mode) {
  auto parts = elements(rel);
  if (!parts || parts->empty())
    return core::invalidArgument("path " + inQuotes(rel) +
                                 " is not a relative path inside a volume");
  std::string shown = path_;
  Fd owned;
  int dir = fd_.get();
  for (size_t i = 0; i + 1 < parts->size(); ++i) {
    shown += "/" + (*parts)[i];
    OUTPOST_ASSIGN_OR_RETURN(owned, openDirAt(dir, (*parts)[i], true, 0755, shown));
    dir = owned.get();
  }
  const std::string& name = parts->back();
  shown += "/" + name;
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) return core::failedPrecondition(shown + " is a directory");
    if (S_ISREG(st.st_mode) && sameContent(dir, name, data)) {
      if ((st.st_mode & 07777) != mode && ::fchmodat(dir, name.c_str(), mode, 0) != 0)
        return sysError("setting the mode of " + shown, errno);
      written_.insert(parts->front());
      return core::okStatus();
    }
    // Anything else (other content, a symlink a container planted, a FIFO) is replaced, never
    // opened or followed.
  } else if (errno != ENOENT) {
    return sysError("reading " + shown, errno);
  }
  // Written beside it and renamed over it, so a container never reads half a file.
  if (::unlinkat(dir, kTmpName, 0) != 0 && errno != ENOENT)
    return sysError("removing a stale " + path_ + "/" + kTmpName, errno);
  Fd tmp(::openat(dir, kTmpName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!tmp) return sysError("creating a temporary file for " + shown, errno);
  core::Status s = ::fchmod(tmp.get(), mode) == 0 ? writeAll(tmp.get(), data)
                                                  : sysError("setting the mode", errno);
  if (s.isOk() && ::close(tmp.release()) != 0) s = sysError("writing", errno);
  if (s.isOk() && ::renameat(dir, kTmpName, dir, name.c_str()) != 0)
    s = sysError("replacing", errno);
  if (!s.isOk()) {
    ::unlinkat(dir, kTmpName, 0);
    return core::Status(s.code(), shown + ": " + s.message());
  }
  written_.insert(parts->front());
  return core::okStatus();
}

core::Status VolumeDir::pruneUnwritten() const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return sysError("reading " + path_, errno);
  std::vector<std::string> gone;
  {
    int copy = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return sysError("reading " + path_, errno);
    DIR* dir = ::fdopendir(copy);
    if (!dir) {
      ::close(copy);
      return sysError("reading " + path_, errno);
    }
    ::rewinddir(dir);  // the copy shares its position with fd_
    while (struct dirent* e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (name != "." && name != ".." && !written_.count(name)) gone.push_back(std::move(name));
    }
    ::closedir(dir);
  }
  for (const auto& name : gone) {
    OUTPOST_RETURN_IF_ERROR(removeAt(fd_.get(), name, st.st_dev, path_ + "/" + inQuotes(name)));
  }
  return core::okStatus();
}

core::Result<std::string> pathInside(const std::string& base, std::string_view rel, bool create) {
  auto parts = elements(rel);
  if (!parts) return core::invalidArgument("subPath " + inQuotes(rel) + " must not contain '..'");
  Fd owned(::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!owned) return sysError("opening " + base, errno);
  std::string out = base;
  for (size_t i = 0; i < parts->size(); ++i) {
    const std::string& e = (*parts)[i];
    out += "/" + e;
    struct stat st {};
    if (::fstatat(owned.get(), e.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) return sysError("reading " + out, errno);
      if (!create)
        return core::notFound("subPath " + inQuotes(rel) + ": " + out + " does not exist");
      OUTPOST_ASSIGN_OR_RETURN(owned, openDirAt(owned.get(), e, true, 0755, out));
      continue;
    }
    if (S_ISLNK(st.st_mode)) {
      return core::failedPrecondition("subPath " + inQuotes(rel) + ": " + out +
                                      " is a symbolic link, refused");
    }
    if (i + 1 == parts->size()) break;  // the mount's source: a directory or a file
    OUTPOST_ASSIGN_OR_RETURN(owned, openDirAt(owned.get(), e, false, 0, out));
  }
  return out;
}

}  // namespace outpost::deploy
