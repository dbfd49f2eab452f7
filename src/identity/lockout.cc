#include "identity/lockout.h"

namespace concord::identity {
namespace {
// Above this many tracked users, stale records are swept on the next failure.
constexpr size_t kSweepAbove = 10000;
}  // namespace

void Lockout::trim(std::deque<SystemTime>& q, SystemTime now) const {
  while (!q.empty() && q.front() + window_ <= now) q.pop_front();
}

bool Lockout::locked(std::string_view user_id, SystemTime now) {
  if (max_failures_ <= 0) return false;
  std::lock_guard lock(mu_);
  auto it = failures_.find(user_id);
  if (it == failures_.end()) return false;
  trim(it->second, now);
  if (it->second.empty()) {
    failures_.erase(it);
    return false;
  }
  return static_cast<int>(it->second.size()) >= max_failures_;
}

void Lockout::record_failure(std::string_view user_id, SystemTime now) {
  if (max_failures_ <= 0) return;
  std::lock_guard lock(mu_);
  if (failures_.size() > kSweepAbove) {
    for (auto it = failures_.begin(); it != failures_.end();) {
      trim(it->second, now);
      it = it->second.empty() ? failures_.erase(it) : std::next(it);
    }
  }
  auto it = failures_.find(user_id);
  if (it == failures_.end())
    it = failures_.emplace(std::string(user_id), std::deque<SystemTime>()).first;
  trim(it->second, now);
  it->second.push_back(now);
  // Only the newest max_failures matter.
  while (static_cast<int>(it->second.size()) > max_failures_) it->second.pop_front();
}

void Lockout::record_success(std::string_view user_id) {
  if (max_failures_ <= 0) return;
  std::lock_guard lock(mu_);
  auto it = failures_.find(user_id);
  if (it != failures_.end()) failures_.erase(it);
}

}  // namespace concord::identity
