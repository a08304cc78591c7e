#include "cri_log.h"

namespace outpost::agent {

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
  for (auto& [stream, text] : partial_) {
    if (!text.empty()) emit(text);
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
    emit(raw);
    return;
  }
  std::string_view text = c == std::string_view::npos ? "" : raw.substr(c + 1);
  auto& partial = partial_[std::string(stream)];
  if (tag == "P") {
    partial.append(text);
    return;
  }
  if (partial.empty()) {
    emit(text);
    return;
  }
  partial.append(text);
  std::string line = std::move(partial);
  partial.clear();
  emit(line);
}

}  // namespace outpost::agent
