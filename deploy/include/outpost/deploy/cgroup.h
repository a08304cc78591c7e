#pragma once
// Removing a pod's cgroup: the one helper deploy and the tests' containerd harness both use.

#include <filesystem>
#include <string>

namespace outpost::deploy {

// Removes the cgroup at `relative` (e.g. "/outpost/pod<uid>") and every cgroup below it, deepest
// first, in each hierarchy mounted under `root`: cgroup v2's single tree and each of v1's
// controller trees. Symbolic links (v1's "cpu,cpuacct" aliases) are not followed. A cgroup that
// cannot be removed (one with processes left) stays, as do its parents; nothing is reported. An
// empty `relative`, or one naming `root` itself, removes nothing.
void removeCgroup(const std::string& relative,
                  const std::filesystem::path& root = "/sys/fs/cgroup");

}  // namespace outpost::deploy
