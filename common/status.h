// Status and StatusOr<T>: how errors cross module boundaries in freshet.
//
// A function that can fail for reasons outside the programmer's control (bad
// input, a dead peer, a missing file) returns Status or StatusOr<T>. Both are
// [[nodiscard]], so callers are forced to look. Programmer errors use glog's
// CHECK instead.
//
// Thread safety: values; safe to copy and read from any thread.
#pragma once

#include <cassert>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

namespace freshet {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,   // bad config, bad input record, bad request
  kNotFound = 2,          // missing file, unknown table
  kDeadlineExceeded = 3,  // a peer did not answer in time
  kUnavailable = 4,       // a peer is gone or the transport is shut down
  kDataLoss = 5,          // corrupt file, checksum mismatch
  kInternal = 6,          // library call failed (MPI, CUDA, ...)
  kFailedPrecondition = 7,
  kResourceExhausted = 8,
  kAborted = 9,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "DEADLINE_EXCEEDED: server rank 1 ..." or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.ToString(); }

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "StatusOr built from an OK status without a value");
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // REQUIRES: ok().
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace freshet

// Propagates a non-OK Status to the caller.
#define FRESHET_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::freshet::Status _freshet_st = (expr);    \
    if (!_freshet_st.ok()) return _freshet_st; \
  } while (0)

#define FRESHET_CONCAT_INNER(a, b) a##b
#define FRESHET_CONCAT(a, b) FRESHET_CONCAT_INNER(a, b)
// FRESHET_ASSIGN_OR_RETURN(auto x, MaybeX()) declares x or returns the error.
#define FRESHET_ASSIGN_OR_RETURN(lhs, expr) \
  FRESHET_ASSIGN_OR_RETURN_IMPL(FRESHET_CONCAT(_freshet_or_, __LINE__), lhs, expr)
#define FRESHET_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
