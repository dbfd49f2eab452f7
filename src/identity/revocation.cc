#include "identity/revocation.h"

#include <mutex>

namespace concord::identity {

void RevocationIndex::raise(TimeMap& m, const std::string& key, int64_t t) {
  auto [it, inserted] = m.emplace(key, t);
  if (!inserted && it->second < t) it->second = t;
}

std::optional<int64_t> RevocationIndex::lookup(const TimeMap& m, std::string_view key) {
  if (key.empty() || m.empty()) return std::nullopt;
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

void RevocationIndex::index(const RevocationEvent& e) {
  switch (e.kind) {
    case RevocationKind::kAuditId: raise(audit_, e.value, e.issued_before); break;
    case RevocationKind::kUser: raise(user_, e.value, e.issued_before); break;
    case RevocationKind::kProject: raise(project_, e.value, e.issued_before); break;
    case RevocationKind::kDomain: raise(domain_, e.value, e.issued_before); break;
    case RevocationKind::kAppCred: raise(app_cred_, e.value, e.issued_before); break;
  }
}

void RevocationIndex::add(const RevocationEvent& e) {
  std::unique_lock lock(mu_);
  if (!events_.emplace(e.id, e).second) return;
  index(e);
}

bool RevocationIndex::contains(std::string_view event_id) const {
  std::shared_lock lock(mu_);
  return events_.find(event_id) != events_.end();
}

void RevocationIndex::prune(int64_t created_before_us) {
  std::unique_lock lock(mu_);
  bool removed = false;
  for (auto it = events_.begin(); it != events_.end();) {
    if (it->second.created_at < created_before_us) {
      it = events_.erase(it);
      removed = true;
    } else {
      ++it;
    }
  }
  if (!removed) return;
  audit_.clear();
  user_.clear();
  project_.clear();
  domain_.clear();
  app_cred_.clear();
  for (const auto& [id, e] : events_) index(e);
}

std::optional<int64_t> RevocationIndex::newest_time_event(const TokenFacts& t) const {
  std::shared_lock lock(mu_);
  std::optional<int64_t> newest;
  auto consider = [&](std::optional<int64_t> v) {
    if (v && (!newest || *v > *newest)) newest = v;
  };
  consider(lookup(user_, t.user_id));
  consider(lookup(project_, t.project_id));
  consider(lookup(domain_, t.user_domain_id));
  consider(lookup(domain_, t.project_domain_id));
  consider(lookup(domain_, t.domain_id));
  return newest;
}

bool RevocationIndex::is_revoked(const TokenFacts& t) const {
  std::shared_lock lock(mu_);
  if (events_.empty()) return false;
  if (lookup(app_cred_, t.app_cred_id)) return true;
  auto before = [&](const TimeMap& m, std::string_view key) {
    auto v = lookup(m, key);
    return v && t.issued_at_us <= *v;
  };
  return before(audit_, t.audit_id) || before(user_, t.user_id) || before(project_, t.project_id) ||
         before(domain_, t.user_domain_id) || before(domain_, t.project_domain_id) ||
         before(domain_, t.domain_id);
}

size_t RevocationIndex::size() const {
  std::shared_lock lock(mu_);
  return events_.size();
}

}  // namespace concord::identity
