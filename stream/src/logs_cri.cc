#include <ctime>

#include "outpost/stream/cri_log.h"

namespace outpost::stream {

void CriLogDecoder::feed(std::string_view bytes, const Emit& emit) {
  size_t start = 0;
  while (start < bytes.size()) {
    size_t nl = bytes.find('\n', start);
    if (nl == std::string_view::npos) {
      raw_.append(bytes.substr(start));
      return;
    }
    if (raw_.empty()) {
      entry(bytes.substr(start, nl - start), emit);
    } else {
      raw_.append(bytes.substr(start, nl - start));
      std::string line = std::move(raw_);
      raw_.clear();
      entry(line, emit);
    }
    start = nl + 1;
  }
}

void CriLogDecoder::flush(const Emit& emit) {
  if (!raw_.empty()) {
    std::string line = std::move(raw_);
    raw_.clear();
    entry(line, emit);
  }
  for (auto& [stream, p] : partial_) {
    if (!p.text.empty()) emit({p.time, stream, p.text});
  }
  partial_.clear();
}

void CriLogDecoder::entry(std::string_view raw, const Emit& emit) {
  // <time> <stream> <tag> <text>; the text may be empty ("<time> stdout F ").
  size_t a = raw.find(' ');
  size_t b = a == std::string_view::npos ? a : raw.find(' ', a + 1);
  size_t c = b == std::string_view::npos ? b : raw.find(' ', b + 1);
  std::string_view stream = b == std::string_view::npos ? "" : raw.substr(a + 1, b - a - 1);
  std::string_view tag;
  if (b != std::string_view::npos) {
    tag = raw.substr(b + 1, c == std::string_view::npos ? std::string_view::npos : c - b - 1);
  }
  bool cri = (stream == "stdout" || stream == "stderr") && (tag == "P" || tag == "F");
  if (!cri) {
    emit({{}, {}, raw});
    return;
  }
  std::string_view time = raw.substr(0, a);
  std::string_view text = c == std::string_view::npos ? "" : raw.substr(c + 1);
  auto& partial = partial_[std::string(stream)];
  if (tag == "P") {
    if (partial.text.empty()) partial.time.assign(time);
    partial.text.append(text);
    return;
  }
  if (partial.text.empty()) {
    emit({time, stream, text});
    return;
  }
  partial.text.append(text);
  Partial whole = std::move(partial);
  partial = {};
  emit({whole.time, stream, whole.text});
}

long long rfc3339Seconds(std::string_view s) {
  auto num = [&](size_t pos, size_t len) -> int {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (i >= s.size() || s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':')
    return -1;
  int year = num(0, 4), mon = num(5, 2), day = num(8, 2), h = num(11, 2), m = num(14, 2),
      sec = num(17, 2);
  if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || h < 0 || h > 23 || m < 0 ||
      m > 59 || sec < 0 || sec > 60)
    return -1;
  size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos, ++digits;
    if (digits == 0 || digits > 9) return -1;
  }
  long long offset = 0;
  if (pos + 1 == s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    offset = 0;
  } else if (pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') && s[pos + 3] == ':') {
    int oh = num(pos + 1, 2), om = num(pos + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return -1;
    offset = (s[pos] == '+' ? 1 : -1) * (oh * 3600LL + om * 60LL);
  } else {
    return -1;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  return static_cast<long long>(timegm(&tm)) - offset;
}

}  // namespace outpost::stream
