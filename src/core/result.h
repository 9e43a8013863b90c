// Result<T>: a value or an Error with a human-readable message.
//
// Recoverable failures (bad files, unsupported models, bad plans, bad requests)
// travel as Result; only cli/ mains turn an Error into an exit code. Invariant
// violations use DUET_CHECK (core/check.h) instead.
#pragma once

#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace duet {

struct Error {
  std::string message;
};

// Concatenates any streamable arguments into one string: str_cat("got ", n, " dims").
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <class... Args>
Error make_error(const Args&... args) {
  return Error{str_cat(args...)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

  const Error& error() const { return std::get<1>(state_); }
  const std::string& message() const { return error().message; }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  const std::string& message() const { return error_.message; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return Status(); }

}  // namespace duet

#define DUET_CONCAT_INNER(a, b) a##b
#define DUET_CONCAT(a, b) DUET_CONCAT_INNER(a, b)

// Returns the error of a failed Status/Result from the enclosing function.
#define DUET_TRY(expr)                                   \
  do {                                                   \
    auto&& duet_try_result_ = (expr);                    \
    if (!duet_try_result_.ok()) return duet_try_result_.error(); \
  } while (0)

// `DUET_ASSIGN_OR_RETURN(auto x, f());` binds the value or returns the error.
#define DUET_ASSIGN_OR_RETURN(lhs, expr) \
  DUET_ASSIGN_OR_RETURN_IMPL(DUET_CONCAT(duet_result_, __LINE__), lhs, expr)
#define DUET_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.error();               \
  lhs = std::move(tmp).value()
