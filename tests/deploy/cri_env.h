#pragma once
// One real containerd per test binary, started on first use and stopped at exit.

#include <memory>
#include <stdexcept>
#include <string>

#include "support/containerd_harness.h"

namespace outpost::test {

class CriEnv {
 public:
  static CriEnv& get() {
    static CriEnv env;
    return env;
  }
  bool available() const { return harness_ != nullptr; }
  const std::string& reason() const { return reason_; }
  ContainerdHarness& harness() { return *harness_; }

 private:
  CriEnv() {
    reason_ = ContainerdHarness::unavailableReason();
    if (!reason_.empty()) return;
    try {
      auto h = std::make_unique<ContainerdHarness>();
      h->start();
      harness_ = std::move(h);
    } catch (const std::exception& e) {
      reason_ = e.what();
    }
  }
  std::unique_ptr<ContainerdHarness> harness_;
  std::string reason_;
};

}  // namespace outpost::test
