#pragma once
// The benchmarks' flags, parsed with CLI11 as outpostctl's are: --help lists each flag with its
// default, and a wrong or unknown flag is named, before the bench has started anything.

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdlib>
#include <string>

namespace outpost::bench {

// An integer flag's check: at least `min`.
inline CLI::Validator atLeast(long long min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        long long n = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc() || end != text.data() + text.size() || n < min)
          return "must be at least " + std::to_string(min) + ", not " + text;
        return {};
      },
      ">=" + std::to_string(min));
}

// Parses argv into `app`'s options (made after app.option_defaults()->always_capture_default(), so
// --help shows each default). --help prints the flags and exits 0; a bad flag prints what was wrong
// and exits 2 (nothing is set up yet, so there is nothing to tear down).
inline void parseFlags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints the help, or what was wrong
    std::exit(code == 0 ? 0 : 2);
  }
}

}  // namespace outpost::bench
