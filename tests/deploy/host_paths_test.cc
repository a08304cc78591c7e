// HostPaths: the one place that builds host paths from a pod's names and writes or removes files
// under the state dir, never following a symlink and never leaving the state dir.

#include "host_paths.h"

#include <doctest/doctest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "support/test_util.h"

namespace outpost::deploy {
namespace {

namespace fs = std::filesystem;
using test::readFile;
using test::TempDir;
using test::writeFile;

mode_t modeOf(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

struct Dirs {
  TempDir root;
  fs::path state = root / "state";
  fs::path outside = root / "outside";
  HostPaths paths{state.string()};
  Dirs() {
    fs::create_directories(outside / "victim");
    writeFile(outside / "victim" / "file", "precious");
    fs::permissions(outside / "victim" / "file", fs::perms::owner_read | fs::perms::owner_write);
  }
};

TEST_CASE_FIXTURE(Dirs, "paths are built from uids only and stay under the state dir") {
  CHECK(*paths.podDir("u-1") == (state / "pods" / "u-1").string());
  CHECK(*paths.logDir("u-1") == (state / "pods" / "u-1" / "logs").string());
  for (const char* bad : {"", "..", ".", "/etc", "../x", "a/b", "a\nb"}) {
    CAPTURE(bad);
    CHECK(paths.podDir(bad).status().code() == core::Code::kInvalidArgument);
    CHECK_FALSE(paths.removePod(bad).isOk());
    CHECK_FALSE(paths.makeLogDir(bad, "c").isOk());
  }
  CHECK_FALSE(paths.openVolume("u-1", "../x", 0755).isOk());
  CHECK_FALSE(paths.openVolume("u-1", "a/b", 0755).isOk());
  CHECK_FALSE(paths.makeLogDir("u-1", "../c").isOk());
  CHECK(lexicallyWithin("/a/b", "/a/b/c"));
  CHECK(lexicallyWithin("/a/b/", "/a/b"));
  CHECK_FALSE(lexicallyWithin("/a/b", "/a/bc"));
  CHECK_FALSE(lexicallyWithin("/a/b", "/a/b/../c"));
  CHECK_FALSE(lexicallyWithin("/a/b", "/etc"));
}

TEST_CASE_FIXTURE(Dirs, "a projected file is written atomically, its mode set, its link replaced") {
  auto dir = paths.openVolume("u-1", "cfg", 0755);
  REQUIRE(dir.isOk());
  fs::path vol = state / "pods" / "u-1" / "volumes" / "cfg";
  CHECK(dir->path() == vol.string());
  REQUIRE(dir->write("a/b/key", "v1", 0600).isOk());
  CHECK(readFile(vol / "a" / "b" / "key") == "v1");
  CHECK(modeOf(vol / "a" / "b" / "key") == 0600);
  REQUIRE(dir->write("a/b/key", "v1", 0644).isOk());  // same content: the mode only
  CHECK(modeOf(vol / "a" / "b" / "key") == 0644);
  // A symlink at the file's name is replaced, its target untouched (also not chmod-ed).
  fs::create_symlink(outside / "victim" / "file", vol / "top");
  REQUIRE(dir->write("top", "precious", 0644).isOk());
  CHECK(fs::is_regular_file(fs::symlink_status(vol / "top")));
  CHECK(modeOf(outside / "victim" / "file") == 0600);
  // A symlinked directory on the way is refused, not followed.
  fs::create_directory_symlink(outside / "victim", vol / "link");
  auto through = dir->write("link/new", "x", 0644);
  CHECK(through.code() == core::Code::kFailedPrecondition);
  CHECK(through.message().find("symbolic link") != std::string::npos);
  CHECK(!fs::exists(outside / "victim" / "new"));
  // A directory at a file's name is an error, not an exception.
  fs::create_directories(vol / "isdir");
  CHECK_FALSE(dir->write("isdir", "x", 0644).isOk());
  CHECK_FALSE(dir->write("..", "x", 0644).isOk());
  CHECK_FALSE(dir->write(".", "x", 0644).isOk());
  CHECK_FALSE(dir->write("a/../../x", "x", 0644).isOk());
  // Pruning removes what was not written (links too, not what they point at).
  REQUIRE(dir->pruneUnwritten().isOk());
  CHECK(fs::exists(vol / "a" / "b" / "key"));
  CHECK(fs::exists(vol / "top"));
  // The next projection writes only "a": "top" goes.
  dir = paths.openVolume("u-1", "cfg", 0755);
  REQUIRE(dir.isOk());
  REQUIRE(dir->write("./a/b/key", "v1", 0644).isOk());
  REQUIRE(dir->pruneUnwritten().isOk());
  CHECK(!fs::exists(vol / "top"));
  CHECK(!fs::exists(fs::symlink_status(vol / "link")));
  CHECK(!fs::exists(vol / "isdir"));
  CHECK(readFile(outside / "victim" / "file") == "precious");
}

TEST_CASE_FIXTURE(Dirs, "a pod's directory is removed without following symlinks, however deep") {
  REQUIRE(paths.makeLogDir("u-1", "c").isOk());
  auto dir = paths.openVolume("u-1", "scratch", 0755);
  REQUIRE(dir.isOk());
  fs::path vol(dir->path());
  fs::create_directory_symlink(outside, vol / "up");
  fs::create_symlink(outside / "victim" / "file", vol / "file");
  fs::path deep = vol;
  for (int i = 0; i < 1000; ++i) deep /= "d";
  fs::create_directories(deep);
  fs::create_directory_symlink(outside / "victim", deep / "link");
  writeFile(deep / "f", "x");
  auto removed = paths.removePod("u-1");
  INFO(removed.toString());
  REQUIRE(removed.isOk());
  CHECK(!fs::exists(state / "pods" / "u-1"));
  CHECK(fs::exists(state / "pods"));
  CHECK(readFile(outside / "victim" / "file") == "precious");
  CHECK(paths.removePod("u-1").isOk());  // already gone
  // pods/<uid> planted as a symlink (by an older agent's bad uid): the link goes, not its target.
  fs::create_directory_symlink(outside / "victim", state / "pods" / "u-2");
  REQUIRE(paths.removePod("u-2").isOk());
  CHECK(readFile(outside / "victim" / "file") == "precious");
}

TEST_CASE_FIXTURE(Dirs,
                  "a file system mounted inside a pod's directory is left in place, unemptied") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to mount");
    return;
  }
  auto dir = paths.openVolume("u-1", "scratch", 0755);
  REQUIRE(dir.isOk());
  fs::path target = fs::path(dir->path()) / "a" / "mnt";
  fs::create_directories(target);
  writeFile(fs::path(dir->path()) / "a" / "f", "x");
  REQUIRE(::mount("outpost-test", target.c_str(), "tmpfs", 0, "size=64k") == 0);
  writeFile(target / "kept", "precious");
  auto removed = paths.removePod("u-1");
  CHECK(removed.code() == core::Code::kFailedPrecondition);
  CHECK(removed.message().find("is a mount point: left in place") != std::string::npos);
  CHECK(readFile(target / "kept") == "precious");
  ::umount2(target.c_str(), MNT_DETACH);
  CHECK(paths.removePod("u-1").isOk());  // unmounted: it goes
  CHECK(!fs::exists(state / "pods" / "u-1"));
}

TEST_CASE_FIXTURE(
    Dirs, "a bind mount of the same file system inside a pod's directory is left in place") {
  // A bind mount keeps its source's device number, so only the kernel's mount-root attribute
  // shows it: comparing devices alone emptied the bound directory.
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to mount");
    return;
  }
  auto dir = paths.openVolume("u-1", "scratch", 0755);
  REQUIRE(dir.isOk());
  fs::path target = fs::path(dir->path()) / "a" / "mnt";
  fs::create_directories(target);
  fs::create_directories(outside / "bound");
  writeFile(outside / "bound" / "kept", "precious");
  REQUIRE(::mount((outside / "bound").c_str(), target.c_str(), nullptr, MS_BIND, nullptr) == 0);
  auto removed = paths.removePod("u-1");
  CHECK(removed.code() == core::Code::kFailedPrecondition);
  CHECK(removed.message().find("is a mount point: left in place") != std::string::npos);
  CHECK(readFile(outside / "bound" / "kept") == "precious");
  ::umount2(target.c_str(), MNT_DETACH);
  CHECK(paths.removePod("u-1").isOk());
  CHECK(readFile(outside / "bound" / "kept") == "precious");
  CHECK(!fs::exists(state / "pods" / "u-1"));
}

TEST_CASE_FIXTURE(Dirs, "a subPath is looked up inside its volume without following symlinks") {
  auto dir = paths.openVolume("u-1", "scratch", 0755);
  REQUIRE(dir.isOk());
  fs::path vol(dir->path());
  fs::create_directory_symlink(outside, vol / "up");
  CHECK(pathInside(vol, "up", true).status().code() == core::Code::kFailedPrecondition);
  CHECK_FALSE(pathInside(vol, "up/victim", true).isOk());
  CHECK(!fs::exists(outside / "victim" / "made"));
  auto made = pathInside(vol, "a/b", true);
  REQUIRE(made.isOk());
  CHECK(*made == (vol / "a" / "b").string());
  CHECK(fs::is_directory(vol / "a" / "b"));
  CHECK(pathInside(vol, "missing", false).status().code() == core::Code::kNotFound);
  CHECK_FALSE(pathInside(vol, "../x", true).isOk());
}

}  // namespace
}  // namespace outpost::deploy
