#pragma once
// Shared by the servers API files (api_server*.cc): loading a server the caller may act on,
// Nova's conflict messages, instance action records, time formats and the server views per
// microversion. Internal to src/compute/service.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/json.h"
#include "base/result.h"
#include "compute/service/api.h"
#include "compute/service/model.h"
#include "store/store.h"

namespace concord::compute::servers {

int64_t now_ms(const Clock& clock);
// Stored timestamps use report.h's stored_time() (microseconds, 'Z'). Views show them as Nova
// does: created/updated "2026-01-01T12:00:00Z"; launched_at/terminated_at and instance action
// times "2026-01-01T12:00:00.000000".
std::string view_time(std::string_view stored);
std::string usg_time(std::string_view stored);

bool is_uuid(std::string_view s);
// The id at the end of a reference given as a bare id or a link ("http://.../images/<id>").
std::string ref_id(std::string_view ref);

// Runs fn in a write transaction; retries the whole transaction when an optimistic update
// lost a race (kAborted), a few times.
[[nodiscard]] Status write_retrying(store::Store& store,
                                    const std::function<Status(store::Tx&)>& fn);

// Deletes a loaded server inside `tx`, for the Nova API and for capabilities that own servers
// (service_servers.h) alike, so both honour the same rule: a server never placed, or whose host is
// down, is deleted at once (Nova's local delete; a host that comes back sees no desired row and
// destroys what it still runs); otherwise the row is marked deleting and the agent finishes it.
// Returns true for a local delete, so a caller can record the action's outcome.
[[nodiscard]] Result<bool> delete_server_row(store::Tx& tx, ComputeContext& ctx, ServerRow& row,
                                             int64_t now);

// The server if the caller may see it with `rule`: 404 for unknown ids, deleted servers, servers
// being deleted, and (for non-admins) other projects' servers.
[[nodiscard]] Result<ServerRow> load_visible(store::Tx& tx, const NovaApi& api,
                                             const NovaApi::Call& call, std::string_view id,
                                             std::string_view rule);

// Nova's 409: "Cannot '<action>' instance <id> while it is in <attr> <state>".
Error invalid_state(std::string_view action, const ServerRow& s, bool task_attr = false);
// 409 "Instance <id> is locked" for non-admins.
[[nodiscard]] Status check_not_locked(const NovaApi::Call& call, const ServerRow& s);

// Records an instance action (and, when `event` is non-empty, its first event) with the
// request's id. `result`: "" while the agent still has to finish it (the report handler
// does), else "Success" or "Error" when it completes in this transaction.
[[nodiscard]] Status record_action(store::Tx& tx, const NovaApi::Call& call, const ServerRow& s,
                                   std::string_view action, std::string_view event, int64_t now_ms,
                                   std::string_view result = {});

// What a view needs beyond the row, loaded for a whole page at once.
struct ServerExtras {
  std::map<std::string, std::string> metadata;
  std::vector<std::string> tags;
  std::string host_status;  // "" when unknown or not needed
};
struct ExtrasWanted {
  bool metadata = true;
  bool tags = false;
  bool host_status = false;
};
[[nodiscard]] Result<std::map<std::string, ServerExtras>> load_extras(
    store::Tx& tx, std::span<const ServerRow> rows, const ExtrasWanted& wanted, int64_t now_ms,
    int64_t down_after_ms);
// Nova's host_status ("UP", "DOWN", "MAINTENANCE", "UNKNOWN") of each named host.
[[nodiscard]] Result<std::map<std::string, std::string>> host_statuses(
    store::Tx& tx, const std::set<std::string>& hosts, int64_t now_ms, int64_t down_after_ms);
[[nodiscard]] Result<ServerExtras> load_one_extras(store::Tx& tx, const NovaApi::Call& call,
                                                   const ServerRow& row, int64_t now_ms,
                                                   int64_t down_after_ms);

enum class ViewKind {
  kShow,     // GET /servers/{id}: everything the version and the caller allow
  kDetail,   // GET /servers/detail items (no server_groups)
  kUpdate,   // PUT /servers/{id}: the basic view below 2.75
  kRebuild,  // rebuild: the basic view plus rebuild's own fields below 2.75
};
// Renders flavors once per page (flavor_json -> text).
struct ViewCache {
  std::map<std::string, std::string> flavors;
};
// Appends the server's JSON object to `out` (the list detail path: no JSON tree is built).
void append_server_view(std::string& out, const NovaApi::Call& call, const ServerRow& s,
                        const ServerExtras& x, ViewKind kind, ViewCache* cache);
// The same in two halves, for cached views: everything that follows from the row (and its
// metadata and tags) without the closing brace, then host_status (when the version and the
// caller show it) and the brace.
void append_server_view_open(std::string& out, const NovaApi::Call& call, const ServerRow& s,
                             const ServerExtras& x, ViewKind kind, ViewCache* cache);
void close_server_view(std::string& out, const NovaApi::Call& call, ViewKind kind,
                       std::string_view host_status);
bool view_has_host_status(const NovaApi::Call& call, ViewKind kind);
// The same view as a JSON value (single-server answers).
Json server_view(const NovaApi::Call& call, const ServerRow& s, const ServerExtras& x,
                 ViewKind kind);
Json server_links(const NovaApi::Call& call, const std::string& id);

// Validation shared by create, update, rebuild and metadata.
[[nodiscard]] Status check_name(const Json& v, std::string_view field);
[[nodiscard]] Result<std::string> canonical_ip(const Json& v, bool v6, std::string_view field);
[[nodiscard]] Status check_metadata(const Json& v, std::string_view field);
[[nodiscard]] Status check_metadata_quota(store::Tx& tx, std::string_view project_id, size_t items);
[[nodiscard]] Result<std::string> check_user_data(const Json& v, size_t max_bytes);
[[nodiscard]] Status check_tag(const Json& v);
std::string bad_field(std::string_view field, const Json& value, std::string_view why);

// The paging and time filters Nova added to os-migrations (2.59) and os-instance-actions
// (2.58): limit (digits only), marker, changes-since, and from 2.66 changes-before, with Nova's
// query-parameter validation messages (400). limit is -1 when absent.
struct ChangesPaging {
  int64_t limit = -1;
  std::optional<std::string> marker;
  std::optional<SystemTime> since, before;
  // Whether a record updated at `updated_at` (stored or ISO time) passes the time filters.
  bool in_window(std::string_view updated_at) const;
};
[[nodiscard]] Result<ChangesPaging> parse_changes_paging(const NovaApi::Call& call);
std::string generate_password();
std::map<std::string, std::string> to_string_map(const Json& obj);
[[nodiscard]] Status replace_metadata(store::Tx& tx, const std::string& server_id,
                                      const std::map<std::string, std::string>& md);

// A bounded regular expression matcher (Thompson NFA: linear time, no backtracking) for the
// `name` and `ip` list filters, which Nova treats as regular expressions (re.search).
class NameMatcher {
 public:
  // kInvalidArgument for a malformed or too long (> 255 bytes) pattern.
  [[nodiscard]] static Result<NameMatcher> compile(std::string_view pattern);
  bool search(std::string_view text) const;
  NameMatcher(NameMatcher&&) noexcept;
  NameMatcher& operator=(NameMatcher&&) noexcept;
  ~NameMatcher();

 private:
  struct Program;
  NameMatcher();
  std::unique_ptr<Program> prog_;
};

void add_server_action_routes(NovaApi& api);  // api_server_actions.cc
void add_server_extra_routes(NovaApi& api);   // api_server_extras.cc

}  // namespace concord::compute::servers
