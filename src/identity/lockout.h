#pragma once
// Password-login throttling per user (Keystone's lockout_failure_attempts/lockout_duration).
// After `max_failures` failures within `window`, the user is locked until enough of those
// failures age out of the window; a successful login clears the record. In memory, per
// replica: N replicas allow at most N x max_failures guesses per window (docs/design/identity.md).
// Only existing users get a record, and records older than the window are pruned, so memory is
// bounded by the number of users under attack.
#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "identity/model.h"

namespace concord::identity {

class Lockout {
 public:
  Lockout(int max_failures, std::chrono::milliseconds window)
      : max_failures_(max_failures), window_(window) {}

  bool locked(std::string_view user_id, SystemTime now);
  void record_failure(std::string_view user_id, SystemTime now);
  void record_success(std::string_view user_id);

 private:
  void trim(std::deque<SystemTime>& q, SystemTime now) const;  // mu_ held
  const int max_failures_;
  const std::chrono::milliseconds window_;
  std::mutex mu_;
  StringMap<std::deque<SystemTime>> failures_;  // guarded by mu_
};

}  // namespace concord::identity
