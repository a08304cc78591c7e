#pragma once
// Small file helpers the upgrader and the helper share: whole-file reads, and writes that replace a
// file atomically (a temporary beside it, fsync, rename), so a power cut leaves the old or the new.

#include <filesystem>
#include <optional>
#include <string>

#include "outpost/core/status.h"

namespace outpost::upgrade {

std::optional<std::string> readSmallFile(const std::filesystem::path& path);
core::Status writeFileAtomic(const std::filesystem::path& path, const std::string& text);
// "<version>_<arch>.<format>": every part was checked (version, arch token, deb/rpm).
std::string packageFileName(const std::string& version, const std::string& arch,
                            const std::string& format);

}  // namespace outpost::upgrade
