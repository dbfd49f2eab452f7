#pragma once
// Identity entities as stored (one struct per table) and the small helpers shared by the
// repository, the caches and the API. Internal to src/identity.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/json.h"

namespace concord::identity {

// Hash maps keyed by std::string that accept std::string_view lookups without allocating.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Keystone stores domains as projects whose domain_id is this marker.
inline constexpr std::string_view kDomainRoot = "<<keystone.domain.root>>";
inline constexpr std::string_view kDefaultDomainId = "default";
// The system target of assignments.
inline constexpr std::string_view kSystemAll = "all";

// Microseconds since the epoch <-> SystemTime (how times are stored).
inline int64_t to_micros(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
inline SystemTime from_micros(int64_t us) {
  return SystemTime(std::chrono::microseconds(us));
}

// A project, or a domain when is_domain (then domain_id == kDomainRoot and parent_id empty).
struct Project {
  std::string id;
  std::string name;
  std::string domain_id;
  std::string parent_id;  // "" = null
  std::optional<std::string> description;
  bool enabled = true;
  bool is_domain = false;
  std::vector<std::string> tags;
  Json extra = Json::object();  // Keystone's free-form attributes
  int64_t revision = 0;
};

struct User {
  std::string id;
  std::string domain_id;
  std::string name;
  bool enabled = true;
  std::string default_project_id;  // "" = none
  std::string password_hash;       // PHC string; "" = no password
  std::optional<int64_t> password_expires_at;
  Json extra = Json::object();
  int64_t revision = 0;
};

struct Group {
  std::string id;
  std::string domain_id;
  std::string name;
  std::optional<std::string> description;
  Json extra = Json::object();
  int64_t revision = 0;
};

struct Role {
  std::string id;
  std::string name;
  std::string domain_id;  // "" = global role
  std::optional<std::string> description;
  Json extra = Json::object();
  int64_t revision = 0;
};

struct ImpliedRule {
  std::string prior_role_id;
  std::string implied_role_id;
};

enum class ActorType { kUser, kGroup };
enum class TargetType { kProject, kDomain, kSystem };

std::string_view actor_type_name(ActorType a);
std::string_view target_type_name(TargetType t);

struct Assignment {
  ActorType actor_type = ActorType::kUser;
  std::string actor_id;
  TargetType target_type = TargetType::kProject;
  std::string target_id;  // kSystemAll for the system
  std::string role_id;
  // OS-INHERIT: the role applies to every project below the target (a domain's projects, a
  // project's subtree), not to the target itself. Stored as target_type "<type>.inherited".
  bool inherited = false;
};

struct Region {
  std::string id;
  std::string description;
  std::string parent_region_id;  // "" = null
  Json extra = Json::object();
  int64_t revision = 0;
};

struct Service {
  std::string id;
  std::string type;
  bool enabled = true;
  Json extra = Json::object();  // name, description, ...
  int64_t revision = 0;
  std::string name() const {
    auto it = extra.find("name");
    return it != extra.end() && it->is_string() ? it->get<std::string>() : std::string();
  }
};

struct Endpoint {
  std::string id;
  std::string service_id;
  std::string interface;
  std::string region_id;  // "" = null
  std::string url;
  bool enabled = true;
  Json extra = Json::object();
  int64_t revision = 0;
};

struct AppCred {
  std::string id;
  std::string user_id;
  std::string project_id;
  std::string name;
  std::optional<std::string> description;
  std::string secret_hash;
  std::optional<int64_t> expires_at;  // microseconds
  bool unrestricted = false;
  std::vector<std::string> role_ids;
  Json access_rules = Json::array();
  int64_t created_at = 0;
};

struct Ec2Credential {
  std::string access;
  std::string user_id;
  std::string project_id;
  std::string secret;
};

enum class RevocationKind { kAuditId, kUser, kProject, kDomain, kAppCred };
std::string_view revocation_kind_name(RevocationKind k);
std::optional<RevocationKind> parse_revocation_kind(std::string_view s);

struct RevocationEvent {
  std::string id;
  RevocationKind kind = RevocationKind::kAuditId;
  std::string value;
  int64_t issued_before = 0;  // microseconds; tokens issued at or before are revoked
  int64_t created_at = 0;
};

// One row of identity_documents: a resource Concord keeps whole as JSON (see schema.cc).
struct Document {
  std::string kind;  // documents::k*
  std::string id;
  Json data = Json::object();
  int64_t revision = 0;
  int64_t created_at = 0;
};

namespace documents {
inline constexpr std::string_view kPolicy = "policy";
inline constexpr std::string_view kCredential = "credential";
inline constexpr std::string_view kConsumer = "oauth1_consumer";
inline constexpr std::string_view kEndpointGroup = "endpoint_group";
// id "<endpoint_group_id>/<project_id>"
inline constexpr std::string_view kEndpointGroupProject = "endpoint_group_project";
inline constexpr std::string_view kDomainConfig = "domain_config";  // id: domain id
// An application credential access rule: {user_id, service, path, method}.
inline constexpr std::string_view kAccessRule = "access_rule";
}  // namespace documents

// Change-feed kinds of identity writes.
namespace kinds {
inline constexpr std::string_view kProject = "identity.project";
inline constexpr std::string_view kUser = "identity.user";
inline constexpr std::string_view kGroup = "identity.group";
inline constexpr std::string_view kMembership = "identity.membership";
inline constexpr std::string_view kRole = "identity.role";
inline constexpr std::string_view kImpliedRole = "identity.implied_role";
inline constexpr std::string_view kAssignment = "identity.assignment";
inline constexpr std::string_view kRegion = "identity.region";
inline constexpr std::string_view kService = "identity.service";
inline constexpr std::string_view kEndpoint = "identity.endpoint";
inline constexpr std::string_view kAppCred = "identity.app_cred";
inline constexpr std::string_view kEc2Credential = "identity.ec2_credential";
inline constexpr std::string_view kRevocation = "identity.revocation";
inline constexpr std::string_view kDocument = "identity.document";
}  // namespace kinds

}  // namespace concord::identity
