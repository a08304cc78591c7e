#pragma once
// Status and Result<T>: how every fallible call in Outpost reports failure (no exception crosses a
// module).

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "outpost/core/check.h"

namespace outpost::core {

// Error codes modelled on gRPC's canonical codes, so a CRI error maps one to one.
enum class Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// The canonical upper-snake name of a code, e.g. "RESOURCE_EXHAUSTED".
std::string_view codeName(Code code);

// The outcome of an operation: OK, or a code with a message for the operator.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }

  bool isOk() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "NOT_FOUND: no such pod" (or "OK").
  std::string toString() const;

  // Prefixes the message with context, keeping the code: "opening store: disk full".
  Status withContext(std::string_view context) const;

  // Marks a status as deliberately not inspected.
  void ignore() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status okStatus() { return Status(); }
inline Status invalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status notFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status alreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status failedPrecondition(std::string m) {
  return {Code::kFailedPrecondition, std::move(m)};
}
inline Status resourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
inline Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status internalError(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status deadlineExceeded(std::string m) { return {Code::kDeadlineExceeded, std::move(m)}; }
inline Status cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }
inline Status unimplemented(std::string m) { return {Code::kUnimplemented, std::move(m)}; }
inline Status dataLoss(std::string m) { return {Code::kDataLoss, std::move(m)}; }
inline Status permissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Status abortedError(std::string m) { return {Code::kAborted, std::move(m)}; }

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design, as in `return value;`
  Result(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    OUTPOST_CHECK(!std::get<Status>(data_).isOk(),
                  "a Result built from a Status must hold an error");
  }

  bool isOk() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return isOk(); }

  // The error; OK when a value is held.
  Status status() const { return isOk() ? Status() : std::get<Status>(data_); }

  // Reading the value of an error is a bug in the caller (it did not test isOk()): checked in every
  // build, so it aborts with the error's text instead of reading a variant that holds none.
  T& value() & {
    checkValue();
    return std::get<T>(data_);
  }
  const T& value() const& {
    checkValue();
    return std::get<T>(data_);
  }
  // On a temporary the value is moved out, so `*makeResult()` never dangles.
  T value() && {
    checkValue();
    return std::get<T>(std::move(data_));
  }
  T valueOr(T fallback) const { return isOk() ? std::get<T>(data_) : std::move(fallback); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void checkValue() const {
    OUTPOST_CHECK(isOk(), "value() of a Result holding ", std::get<Status>(data_).toString());
  }

  std::variant<T, Status> data_;
};

namespace detail {
inline Status toStatus(const Status& s) { return s; }
template <typename T>
Status toStatus(const Result<T>& r) {
  return r.status();
}
}  // namespace detail

}  // namespace outpost::core

#define OUTPOST_CONCAT_INNER(a, b) a##b
#define OUTPOST_CONCAT(a, b) OUTPOST_CONCAT_INNER(a, b)

// Returns the Status of `expr` (a Status or a Result) from the enclosing function when it is an
// error.
#define OUTPOST_RETURN_IF_ERROR(expr)                               \
  do {                                                              \
    auto outpost_status_ = ::outpost::core::detail::toStatus(expr); \
    if (!outpost_status_.isOk()) return outpost_status_;            \
  } while (false)

// `OUTPOST_ASSIGN_OR_RETURN(auto x, makeX());` declares x from a Result's value or returns its
// error. `lhs` and `tmp` are declarations, not expressions: they cannot take parentheses.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define OUTPOST_ASSIGN_OR_RETURN(lhs, expr) \
  OUTPOST_ASSIGN_OR_RETURN_IMPL(OUTPOST_CONCAT(outpost_result_, __LINE__), lhs, expr)
#define OUTPOST_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.isOk()) return tmp.status();               \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
