#include "outpost/deploy/cgroup.h"

#include <unistd.h>

#include <system_error>
#include <vector>

namespace outpost::deploy {
namespace {

namespace fs = std::filesystem;

// `dir` and the directories below it, children before their parent.
void removeTree(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && !e.is_symlink(ec)) removeTree(e.path());
  }
  ::rmdir(dir.c_str());
}

}  // namespace

void removeCgroup(const std::string& relative, const fs::path& root) {
  fs::path rel = fs::path(relative).relative_path();
  if (rel.empty()) return;
  std::vector<fs::path> roots = {root};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory(ec) && !e.is_symlink(ec)) roots.push_back(e.path());
  }
  for (const auto& r : roots) {
    fs::path dir = r / rel;
    if (dir != r && fs::is_directory(dir, ec)) removeTree(dir);
  }
}

}  // namespace outpost::deploy
