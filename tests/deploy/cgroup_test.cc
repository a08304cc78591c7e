// deploy::removeCgroup on a tree of plain directories laid out as the cgroup mounts are: v2's
// single tree at the root, v1's controller trees below it, and a v1 alias link.

#include "outpost/deploy/cgroup.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "support/test_util.h"

namespace outpost::test {
namespace {

namespace fs = std::filesystem;

struct CgroupMounts {
  CgroupMounts() {
    for (const char* tree : {"", "cpu", "memory"}) {
      fs::create_directories(root() / tree / "outpost/poda/ctr1/deeper");
      fs::create_directories(root() / tree / "outpost/poda/ctr2");
      fs::create_directories(root() / tree / "outpost/podb/ctr3");
    }
    fs::create_directory_symlink(root() / "cpu", root() / "cpu,cpuacct");
  }
  fs::path root() const { return dir.path() / "cgroup"; }
  TempDir dir;
};

TEST_CASE_FIXTURE(CgroupMounts,
                  "a pod's cgroup goes with its children in every hierarchy; its siblings and "
                  "parent stay") {
  deploy::removeCgroup("/outpost/poda", root());
  for (const char* tree : {"", "cpu", "memory"}) {
    INFO("hierarchy '" << tree << "'");
    CHECK_FALSE(fs::exists(root() / tree / "outpost/poda"));
    CHECK(fs::is_directory(root() / tree / "outpost/podb/ctr3"));
  }
  CHECK(fs::is_symlink(root() / "cpu,cpuacct"));
}

TEST_CASE_FIXTURE(CgroupMounts, "a cgroup that cannot be removed stays, the rest goes") {
  // A file stands for a process: the kernel refuses to remove a cgroup that still has one.
  std::ofstream(root() / "memory/outpost/poda/ctr1/busy") << "1";
  deploy::removeCgroup("outpost/poda", root());
  CHECK(fs::exists(root() / "memory/outpost/poda/ctr1/busy"));
  CHECK_FALSE(fs::exists(root() / "memory/outpost/poda/ctr2"));
  CHECK_FALSE(fs::exists(root() / "memory/outpost/poda/ctr1/deeper"));
  CHECK_FALSE(fs::exists(root() / "cpu/outpost/poda"));
}

TEST_CASE_FIXTURE(CgroupMounts, "an empty path or the root itself removes nothing") {
  fs::create_directory(root() / "empty");
  for (const char* relative : {"", "/"}) deploy::removeCgroup(relative, root());
  CHECK(fs::is_directory(root() / "empty"));
  CHECK(fs::is_directory(root() / "cpu/outpost/poda/ctr2"));
}

}  // namespace
}  // namespace outpost::test
