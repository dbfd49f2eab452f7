#pragma once
// The one error type carried across module seams. No exceptions cross a seam:
// code that calls a throwing library converts at the edge.
//
// Codes follow absl::StatusCode's retry meaning:
//   kInvalidArgument     the request is wrong; do not retry it unchanged.
//   kNotFound            the thing named does not exist (or is not visible to the caller).
//   kAlreadyExists       a uniqueness rule was broken (maps to HTTP 409).
//   kAborted             an optimistic-concurrency conflict (stale revision); re-read and retry
//                        the whole read-modify-write.
//   kFailedPrecondition  the system is not in a state that allows this; do not retry until it
//                        changes (e.g. deleting a domain that is still enabled).
//   kUnauthenticated     no valid credentials (HTTP 401).
//   kPermissionDenied    valid credentials, not allowed (HTTP 403).
//   kResourceExhausted   a quota or a throttle; retry later (HTTP 429 / 413 by API family).
//   kUnavailable         a transient failure (database busy, peer down); retry the same call.
//   kDeadlineExceeded    the deadline passed; the outcome may be unknown.
//   kInternal            a bug or broken invariant; logged, reported as 500.
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace concord {

enum class Code {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kAborted,
  kFailedPrecondition,
  kUnauthenticated,
  kPermissionDenied,
  kResourceExhausted,
  kUnavailable,
  kDeadlineExceeded,
  kInternal,
};

std::string_view code_name(Code code);

class Error {
 public:
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

 private:
  Code code_;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;

// Result of an operation that produces no value.
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(Code code, std::string message) {
  return std::unexpected<Error>(std::in_place, code, std::move(message));
}
inline std::unexpected<Error> fail(Error error) {
  return std::unexpected<Error>(std::move(error));
}

inline Status ok() {
  return {};
}

}  // namespace concord

// Propagates an error from an expression returning Result<T>/Status; evaluates to nothing.
#define CONCORD_RETURN_IF_ERROR(expr)                               \
  do {                                                              \
    if (auto concord_status_ = (expr); !concord_status_) {          \
      return ::std::unexpected(std::move(concord_status_.error())); \
    }                                                               \
  } while (false)

#define CONCORD_CONCAT_INNER_(a, b) a##b
#define CONCORD_CONCAT_(a, b) CONCORD_CONCAT_INNER_(a, b)
// `CONCORD_ASSIGN_OR_RETURN(auto x, f());` binds the value of f() or returns its error.
#define CONCORD_ASSIGN_OR_RETURN(lhs, expr)                                                  \
  auto CONCORD_CONCAT_(concord_result_, __LINE__) = (expr);                                  \
  if (!CONCORD_CONCAT_(concord_result_, __LINE__)) {                                         \
    return ::std::unexpected(std::move(CONCORD_CONCAT_(concord_result_, __LINE__).error())); \
  }                                                                                          \
  lhs = std::move(*CONCORD_CONCAT_(concord_result_, __LINE__))
