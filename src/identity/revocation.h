#pragma once
// In-memory index of revocation events, the hot-path half of Keystone-style revocation (the
// events themselves live in the store table identity_revocations). Each kind is a hash map, so
// checking a token is a handful of lookups under a shared lock.
//
// Matching (tokens issued at or before `issued_before` are revoked):
//   audit     the token's own audit id (audit_ids[0]) equals the value;
//   user      the token's user;
//   project   a token scoped to the project;
//   domain    the token's user domain, its project's domain, or its domain scope;
//   app_cred  a token issued with that application credential (whenever issued).
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "identity/model.h"

namespace concord::identity {

struct TokenFacts {
  std::string_view user_id;
  std::string_view user_domain_id;
  std::string_view project_id;         // project scope
  std::string_view project_domain_id;  // project scope
  std::string_view domain_id;          // domain scope
  std::string_view audit_id;           // audit_ids[0]
  std::string_view app_cred_id;
  int64_t issued_at_us = 0;
};

class RevocationIndex {
 public:
  // Idempotent by event id.
  void add(const RevocationEvent& e);
  bool contains(std::string_view event_id) const;
  // Forgets events created before the cutoff (no token they could match is still valid).
  void prune(int64_t created_before_us);
  bool is_revoked(const TokenFacts& t) const;
  // The newest issued_before among the time-based events (user, project, domain) that match
  // the token, if any. Used at issue to keep a brand-new token clear of an event recorded in
  // the same clock tick.
  std::optional<int64_t> newest_time_event(const TokenFacts& t) const;
  size_t size() const;

 private:
  using TimeMap = StringMap<int64_t>;
  void index(const RevocationEvent& e);  // mu_ held exclusively
  static void raise(TimeMap& m, const std::string& key, int64_t t);
  static std::optional<int64_t> lookup(const TimeMap& m, std::string_view key);

  mutable std::shared_mutex mu_;
  StringMap<RevocationEvent> events_;  // by id; guarded by mu_
  TimeMap audit_;                      // audit id -> issued_before; guarded by mu_
  TimeMap user_;                       // guarded by mu_
  TimeMap project_;                    // guarded by mu_
  TimeMap domain_;                     // guarded by mu_
  TimeMap app_cred_;                   // guarded by mu_
};

}  // namespace concord::identity
