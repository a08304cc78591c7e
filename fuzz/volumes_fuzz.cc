// Volume projection and container mounts (deploy/src/volumes.h prepareVolumes, containerMounts;
// deploy/src/host_paths.h underneath) of pods parsed by deploy/src/pod_spec.h, against a real state
// directory. The input format is fuzz/deploy_input.h's: a Pod's JSON and the configmaps and secrets
// it projects. Checked: nothing prepareVolumes or containerMounts creates, writes, renames, chmods
// or removes lies outside the state directory (or, for hostPath volumes, the allowed host
// directory), the paths they return stay inside, and a mount's host path lies inside its volume.
//
// How that is enforced without ever letting a write escape (the fuzzer may run as root): the
// harness defines the libc functions that change the filesystem (mkdir, open/fopen for writing,
// rename, unlink, rmdir, remove, chmod, ...). The executable's definitions take precedence over
// libc's for its own code and for libstdc++'s std::filesystem and fstreams. While prepareVolumes
// runs, each call's target is resolved (symlinks of its existing part included) and, if it is not
// inside the state directory, the process aborts before the call is made: libFuzzer keeps the
// input. At start the harness checks that the guard sees each kind of call (it refuses to run
// otherwise). Besides, the state directory has a sibling canary directory in a fresh temporary
// root; after each input the root must hold only those two and the canary must be unchanged.
//
// hostPath volumes: prepareVolumes gets hostPathAllow = {<root>/host}, and a hostPath under "/host"
// in the input is moved to <root>/host (so DirectoryOrCreate and FileOrCreate run there); every
// other hostPath must be refused without being touched.
//
// Adapting to a new prepareVolumes or containerMounts signature: only project() calls them.

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <system_error>

#include "deploy_input.h"
#include "fuzz_util.h"
#include "pod_spec.h"
#include "volumes.h"

namespace fs = std::filesystem;
namespace deploy = outpost::deploy;

namespace {

// ---- the filesystem guard

enum class GuardMode { kOff, kEnforce, kProbe };
std::atomic<GuardMode> gMode{GuardMode::kOff};
std::string gAllowed;         // the state directory, canonical
std::string gAllowedHost;     // the directory hostPath volumes may use, canonical
std::atomic<int> gProbed{0};  // calls the guard saw in probe mode
thread_local bool tInGuard = false;

// Resolves `path` (relative to `dirfd`) to an absolute path: the existing part canonical.
std::string resolve(int dirfd, const char* path) {
  if (path == nullptr) return {};
  fs::path p(path);
  if (p.is_relative()) {
    std::error_code ec;
    fs::path base;
    if (dirfd == AT_FDCWD) {
      base = fs::current_path(ec);
    } else {
      base = fs::read_symlink("/proc/self/fd/" + std::to_string(dirfd), ec);
    }
    p = base / p;
  }
  std::error_code ec;
  fs::path w = fs::weakly_canonical(p, ec);
  return (ec ? p.lexically_normal() : w).string();
}

bool under(const std::string& resolved, const std::string& dir) {
  return resolved == dir || resolved.rfind(dir + "/", 0) == 0;
}
bool allowed(const std::string& resolved) {
  return under(resolved, gAllowed) || (!gAllowedHost.empty() && under(resolved, gAllowedHost));
}

// libFuzzer saves the input of a crash inside prepareVolumes (an ASan report, a timeout) while the
// guard is on: files named crash-*, leak-*, timeout-*, oom-*, slow-unit-* in its artifact
// directory (-artifact_prefix, else the working directory) or -exact_artifact_path pass.
std::string gArtifactDir, gExactArtifact;
bool artifact(const std::string& resolved) {
  if (!gExactArtifact.empty() && resolved == gExactArtifact) return true;
  fs::path p(resolved);
  if (p.parent_path().string() != gArtifactDir) return false;
  std::string name = p.filename().string();
  for (const char* kind : {"crash-", "leak-", "timeout-", "oom-", "slow-unit-"}) {
    if (name.find(kind) != std::string::npos) return true;
  }
  return false;
}

// Called before every filesystem change; returns false (errno EACCES) to refuse it in probe mode.
bool permit(const char* op, int dirfd, const char* path) {
  GuardMode mode = gMode.load();
  if (mode == GuardMode::kOff || tInGuard) return true;
  tInGuard = true;
  std::string target = resolve(dirfd, path);
  bool ok = allowed(target);
  bool saving = !ok && artifact(target);
  tInGuard = false;
  if (mode == GuardMode::kProbe) {
    ++gProbed;
    errno = EACCES;
    return false;
  }
  if (!ok && !saving) {
    gMode = GuardMode::kOff;  // so that libFuzzer can save the input
    outpost::fuzz::fail(std::string("prepareVolumes: ") + op + "(\"" + (path ? path : "") +
                        "\") -> " + target + " is outside the state directory " + gAllowed +
                        " (and the hostPath directory)");
  }
  return true;
}

bool writes(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)) != 0; }
bool writesMode(const char* mode) {
  return mode != nullptr && std::strpbrk(mode, "wa+") != nullptr;
}

template <typename F>
F real(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "volumes_fuzz: no libc %s\n", name);
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

}  // namespace

// The guarded libc functions. Each refuses (probe mode) or aborts (enforce mode) before calling
// libc's.
extern "C" {

int mkdir(const char* path, mode_t mode) {
  if (!permit("mkdir", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*, mode_t)>("mkdir");
  return f(path, mode);
}
int mkdirat(int dirfd, const char* path, mode_t mode) {
  if (!permit("mkdirat", dirfd, path)) return -1;
  static auto f = real<int (*)(int, const char*, mode_t)>("mkdirat");
  return f(dirfd, path, mode);
}
int open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if ((flags & (O_CREAT | O_TMPFILE)) != 0) {
    va_list ap;
    va_start(ap, flags);
    mode = static_cast<mode_t>(va_arg(ap, int));
    va_end(ap);
  }
  if (writes(flags) && !permit("open", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*, int, ...)>("open");
  return f(path, flags, mode);
}
int open64(const char* path, int flags, ...) {
  mode_t mode = 0;
  if ((flags & (O_CREAT | O_TMPFILE)) != 0) {
    va_list ap;
    va_start(ap, flags);
    mode = static_cast<mode_t>(va_arg(ap, int));
    va_end(ap);
  }
  if (writes(flags) && !permit("open64", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*, int, ...)>("open64");
  return f(path, flags, mode);
}
int openat(int dirfd, const char* path, int flags, ...) {
  mode_t mode = 0;
  if ((flags & (O_CREAT | O_TMPFILE)) != 0) {
    va_list ap;
    va_start(ap, flags);
    mode = static_cast<mode_t>(va_arg(ap, int));
    va_end(ap);
  }
  if (writes(flags) && !permit("openat", dirfd, path)) return -1;
  static auto f = real<int (*)(int, const char*, int, ...)>("openat");
  return f(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char* path, int flags, ...) {
  mode_t mode = 0;
  if ((flags & (O_CREAT | O_TMPFILE)) != 0) {
    va_list ap;
    va_start(ap, flags);
    mode = static_cast<mode_t>(va_arg(ap, int));
    va_end(ap);
  }
  if (writes(flags) && !permit("openat64", dirfd, path)) return -1;
  static auto f = real<int (*)(int, const char*, int, ...)>("openat64");
  return f(dirfd, path, flags, mode);
}
int creat(const char* path, mode_t mode) {
  if (!permit("creat", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*, mode_t)>("creat");
  return f(path, mode);
}
FILE* fopen(const char* path, const char* mode) {
  if (writesMode(mode) && !permit("fopen", AT_FDCWD, path)) return nullptr;
  static auto f = real<FILE* (*)(const char*, const char*)>("fopen");
  return f(path, mode);
}
FILE* fopen64(const char* path, const char* mode) {
  if (writesMode(mode) && !permit("fopen64", AT_FDCWD, path)) return nullptr;
  static auto f = real<FILE* (*)(const char*, const char*)>("fopen64");
  return f(path, mode);
}
int rename(const char* from, const char* to) {
  if (!permit("rename", AT_FDCWD, from) || !permit("rename", AT_FDCWD, to)) return -1;
  static auto f = real<int (*)(const char*, const char*)>("rename");
  return f(from, to);
}
int renameat(int fromfd, const char* from, int tofd, const char* to) {
  if (!permit("renameat", fromfd, from) || !permit("renameat", tofd, to)) return -1;
  static auto f = real<int (*)(int, const char*, int, const char*)>("renameat");
  return f(fromfd, from, tofd, to);
}
int renameat2(int fromfd, const char* from, int tofd, const char* to, unsigned int flags) {
  if (!permit("renameat2", fromfd, from) || !permit("renameat2", tofd, to)) return -1;
  static auto f = real<int (*)(int, const char*, int, const char*, unsigned int)>("renameat2");
  return f(fromfd, from, tofd, to, flags);
}
int unlink(const char* path) {
  if (!permit("unlink", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*)>("unlink");
  return f(path);
}
int unlinkat(int dirfd, const char* path, int flags) {
  if (!permit("unlinkat", dirfd, path)) return -1;
  static auto f = real<int (*)(int, const char*, int)>("unlinkat");
  return f(dirfd, path, flags);
}
int rmdir(const char* path) {
  if (!permit("rmdir", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*)>("rmdir");
  return f(path);
}
int remove(const char* path) {
  if (!permit("remove", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*)>("remove");
  return f(path);
}
int chmod(const char* path, mode_t mode) {
  if (!permit("chmod", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*, mode_t)>("chmod");
  return f(path, mode);
}
int fchmod(int fd, mode_t mode) {
  // A directory opened read-only can still have its mode changed: resolved through /proc.
  std::string self = "/proc/self/fd/" + std::to_string(fd);
  if (!permit("fchmod", AT_FDCWD, self.c_str())) return -1;
  static auto f = real<int (*)(int, mode_t)>("fchmod");
  return f(fd, mode);
}
int fchmodat(int dirfd, const char* path, mode_t mode, int flags) {
  if (!permit("fchmodat", dirfd, path)) return -1;
  static auto f = real<int (*)(int, const char*, mode_t, int)>("fchmodat");
  return f(dirfd, path, mode, flags);
}
int link(const char* from, const char* to) {
  if (!permit("link", AT_FDCWD, to)) return -1;
  static auto f = real<int (*)(const char*, const char*)>("link");
  return f(from, to);
}
int symlink(const char* target, const char* path) {
  if (!permit("symlink", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*, const char*)>("symlink");
  return f(target, path);
}
int truncate(const char* path, off_t length) {
  if (!permit("truncate", AT_FDCWD, path)) return -1;
  static auto f = real<int (*)(const char*, off_t)>("truncate");
  return f(path, length);
}

}  // extern "C"

namespace {

fs::path gRoot, gState, gCanary, gHost;
// OUTPOST_FUZZ_VERBOSE=1: what prepareVolumes and containerMounts answered, for a replayed input.
const bool gVerbose = std::getenv("OUTPOST_FUZZ_VERBOSE") != nullptr;
const char kCanaryText[] = "outpost volumes_fuzz canary\n";

void removeRoot() {
  gMode = GuardMode::kOff;
  std::error_code ec;
  if (!gRoot.empty()) fs::remove_all(gRoot, ec);
}

// Every kind of call prepareVolumes makes must reach the guard, or the harness would protect
// nothing: tried in probe mode (refused, so nothing happens) on the canary.
void probeGuard() {
  struct Try {
    const char* what;
    std::function<void()> run;
  };
  fs::path p = gCanary / "probe";
  const std::vector<Try> tries = {
      {"std::filesystem::create_directories",
       [&] {
         std::error_code ec;
         fs::create_directories(p / "a", ec);
       }},
      {"std::ofstream", [&] { std::ofstream out(p, std::ios::binary | std::ios::trunc); }},
      {"std::filesystem::rename",
       [&] {
         std::error_code ec;
         fs::rename(gCanary / "file", p, ec);
       }},
      {"std::filesystem::remove_all",
       [&] {
         std::error_code ec;
         fs::remove_all(gCanary / "file", ec);
       }},
      {"std::filesystem::remove",
       [&] {
         std::error_code ec;
         fs::remove(gCanary / "file", ec);
       }},
      {"chmod", [&] { (void)::chmod((gCanary / "file").c_str(), 0600); }},
      // What deploy's HostPaths calls itself, relative to directory descriptors.
      {"mkdirat", [&] { (void)::mkdirat(AT_FDCWD, p.c_str(), 0755); }},
      {"openat (write)", [&] { (void)::openat(AT_FDCWD, p.c_str(), O_WRONLY | O_CREAT, 0600); }},
      {"unlinkat", [&] { (void)::unlinkat(AT_FDCWD, (gCanary / "file").c_str(), 0); }},
      {"renameat",
       [&] { (void)::renameat(AT_FDCWD, (gCanary / "file").c_str(), AT_FDCWD, p.c_str()); }},
      {"fchmod",
       [&] {
         int fd = ::open(gCanary.c_str(), O_RDONLY | O_DIRECTORY);
         if (fd >= 0) {
           (void)::fchmod(fd, 0700);
           ::close(fd);
         }
       }},
  };
  for (const auto& t : tries) {
    int before = gProbed;
    gMode = GuardMode::kProbe;
    t.run();
    gMode = GuardMode::kOff;
    if (gProbed == before) {
      std::fprintf(stderr, "volumes_fuzz: the filesystem guard does not see %s; not running\n",
                   t.what);
      std::exit(1);
    }
  }
}

std::string canaryState() {
  std::string out;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(gCanary, ec)) {
    out += e.path().string() + "\n";
  }
  std::ifstream in(gCanary / "file", std::ios::binary);
  out.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  struct stat st {};
  if (::stat((gCanary / "file").c_str(), &st) == 0) out += std::to_string(st.st_mode);
  return out;
}
std::string gCanaryExpected;

void project(const deploy::PodSpec& pod, outpost::fuzz::FakeDesired& desired) {
  gMode = GuardMode::kEnforce;
  auto paths = deploy::prepareVolumes(pod, gState.string(), desired, {gHost.string()});
  gMode = GuardMode::kOff;
  if (gVerbose) std::fprintf(stderr, "prepareVolumes: %s\n", paths.status().message().c_str());
  if (!paths.isOk()) return;
  for (const auto& [name, path] : paths.value()) {
    outpost::fuzz::check(allowed(resolve(AT_FDCWD, path.c_str())),
                         "prepareVolumes returned a path outside the state directory: " + path);
  }
  for (const auto* list : {&pod.initContainers, &pod.containers}) {
    for (const auto& c : *list) {
      gMode = GuardMode::kEnforce;
      auto mounts = deploy::containerMounts(pod, c, paths.value());
      gMode = GuardMode::kOff;
      if (!mounts.isOk()) {
        if (gVerbose)
          std::fprintf(stderr, "containerMounts: %s\n", mounts.status().message().c_str());
        continue;
      }
      for (const auto& m : mounts.value()) {
        if (gVerbose)
          std::fprintf(stderr, "mount %s <- %s\n", m.containerPath.c_str(), m.hostPath.c_str());
        // Its volume: a mount of the container with this container path.
        bool inside = false;
        for (const auto& spec : c.mounts) {
          auto volume = paths.value().find(spec.name);
          if (spec.mountPath != m.containerPath || volume == paths.value().end()) continue;
          inside = inside || under(resolve(AT_FDCWD, m.hostPath.c_str()),
                                   resolve(AT_FDCWD, volume->second.c_str()));
        }
        outpost::fuzz::check(inside, "a mount's host path " + m.hostPath +
                                         " is not inside its volume (subPath leads out)");
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  gArtifactDir = resolve(AT_FDCWD, ".");
  for (int i = 1; i < *argc; ++i) {
    std::string_view arg = (*argv)[i];
    if (arg.rfind("-artifact_prefix=", 0) == 0) {
      // "dir/" or "dir/name-": the directory part ("dir" either way).
      fs::path dir = fs::path(std::string(arg.substr(17))).parent_path();
      if (dir.empty()) dir = ".";
      gArtifactDir = resolve(AT_FDCWD, dir.c_str());
    } else if (arg.rfind("-exact_artifact_path=", 0) == 0) {
      gExactArtifact = resolve(AT_FDCWD, std::string(arg.substr(21)).c_str());
    }
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/outpost-volumes-fuzz.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("volumes_fuzz: mkdtemp");
    std::exit(1);
  }
  gRoot = fs::canonical(tmpl);
  gState = gRoot / "state";
  gCanary = gRoot / "canary";
  gHost = gRoot / "host";
  fs::create_directories(gState);
  fs::create_directories(gCanary);
  fs::create_directories(gHost);
  { std::ofstream(gCanary / "file") << kCanaryText; }
  gAllowed = gState.string();
  gAllowedHost = gHost.string();
  std::atexit(removeRoot);
  probeGuard();
  gCanaryExpected = canaryState();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = outpost::fuzz::readDeployInput(outpost::fuzz::asText(data, size));
  auto parsed = deploy::parsePod("default/pod/fuzz", in.pod, "default");
  if (parsed.isOk()) {
    deploy::PodSpec pod = std::move(parsed).value();
    for (auto& v : pod.volumes) {
      if (v.kind == deploy::VolumeSpec::Kind::kHostPath && v.path.rfind("/host/", 0) == 0)
        v.path = gHost.string() + v.path.substr(5);
    }
    project(pod, in.desired);
    // Twice: the second run rewrites only what changed and removes what is no longer wanted.
    project(pod, in.desired);
  }
  // Nothing beside the state, hostPath and canary directories, and the canary untouched.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(gRoot, ec)) {
    outpost::fuzz::check(e.path() == gState || e.path() == gCanary || e.path() == gHost,
                         "something appeared beside the state directory: " + e.path().string());
  }
  outpost::fuzz::check(canaryState() == gCanaryExpected, "the canary directory changed");
  // A clean state directory for the next input.
  for (const auto& e : fs::directory_iterator(gState, ec)) fs::remove_all(e.path(), ec);
  for (const auto& e : fs::directory_iterator(gHost, ec)) fs::remove_all(e.path(), ec);
  return 0;
}
