#include "outpost/core/log.h"

#include <doctest/doctest.h>

#include <algorithm>

#include "support/test_util.h"

using namespace outpost::core;
using outpost::test::readFile;
using outpost::test::TempDir;

TEST_CASE("log lines carry the module tag and respect the level, which can change at run time") {
  TempDir dir;
  auto file = (dir / "log").string();
  {
    Logging logging({LogLevel::kInfo, false, file});
    Logger log = logging.get("metadb");
    log.debug("hidden ", 1);
    log.info("opened ", "store", " with ", 3, " rows");
    logging.setLevel(LogLevel::kDebug);
    log.debug("now visible");
    logging.setLevel(LogLevel::kError);
    log.warn("not shown");
    logging.flush();
  }
  std::string text = readFile(file);
  CHECK(text.find("[metadb] opened store with 3 rows") != std::string::npos);
  CHECK(text.find("I [metadb]") != std::string::npos);
  CHECK(text.find("hidden") == std::string::npos);
  CHECK(text.find("now visible") != std::string::npos);
  CHECK(text.find("not shown") == std::string::npos);
}

TEST_CASE("under journald lines have a syslog priority prefix and no timestamp") {
  TempDir dir;
  auto file = (dir / "log").string();
  {
    Logging logging({LogLevel::kDebug, true, file});
    logging.get("agent").warn("uplink lost");
    logging.get("agent").info("ready");
    logging.get("deploy").error("pull failed");
    logging.get("deploy").debug("polling");
    logging.flush();
  }
  std::string text = readFile(file);
  CHECK(text ==
        "<4>[agent] uplink lost\n<6>[agent] ready\n<3>[deploy] pull failed\n<7>[deploy] polling\n");
}

TEST_CASE("log levels parse from their names") {
  CHECK(parseLogLevel("DEBUG") == LogLevel::kDebug);
  CHECK(parseLogLevel("warning") == LogLevel::kWarn);
  CHECK_FALSE(parseLogLevel("loud").has_value());
  CHECK(logLevelName(LogLevel::kError) == "error");
}

TEST_CASE("one record is one line: control characters from outside are escaped, not written") {
  TempDir dir;
  auto file = (dir / "log").string();
  {
    Logging logging({LogLevel::kInfo, false, file});
    logging.get("cloudhub")
        .warn("ignored message ", "update\n2026-12-06 [agent] I forged\r",
              std::string("\x1b[31mred\0", 9));
    logging.flush();
  }
  std::string text = readFile(file);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  CHECK(text.find("update\\n2026-12-06 [agent] I forged\\r\\x1b[31mred\\x00") != std::string::npos);
  CHECK(escapeControl("plain text") == "plain text");
  CHECK(escapeControl("a\tb\x7f") == "a\\tb\\x7f");
}
