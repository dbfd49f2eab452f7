// Server metadata, tags (2.26) and instance actions: small sub-resources of a server. Writes
// follow Nova's state rules (metadata and tags change only on an idle server in a settled state;
// metadata refuses a locked server) and update the row's updated_at through update_server so the
// change is ordered with every other write to the server.
#include <openssl/evp.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "base/encoding.h"
#include "compute/service/api_servers_internal.h"
#include "compute/service/report.h"

namespace concord::compute::servers {

namespace {

using Call = NovaApi::Call;

std::unexpected<Error> bad(std::string message) {
  return fail(Code::kInvalidArgument, std::move(message));
}

Result<std::map<std::string, std::string>> read_metadata(store::Tx& tx, const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                           tx.query("SELECT key, value FROM compute_server_metadata WHERE "
                                    "server_id = ?",
                                    {id}));
  std::map<std::string, std::string> md;
  for (const store::Row& r : rows) md[r.text(0)] = r.text(1);
  return md;
}

Json to_json_object(const std::map<std::string, std::string>& m) {
  Json o = Json::object();
  for (const auto& [k, v] : m) o[k] = v;
  return o;
}

// Nova's check for metadata writes: settled vm_state, no task, not locked (non-admin).
Status check_metadata_writable(const Call& call, const ServerRow& s, std::string_view action) {
  CONCORD_RETURN_IF_ERROR(check_not_locked(call, s));
  static const std::set<std::string, std::less<>> kStates = {"active", "paused", "suspended",
                                                             "stopped"};
  if (!kStates.contains(s.vm_state)) return fail(invalid_state(action, s));
  if (s.task_state) return fail(invalid_state(action, s, true));
  return ok();
}

Status check_tags_writable(const ServerRow& s, std::string_view action) {
  static const std::set<std::string, std::less<>> kStates = {
      "active", "paused", "suspended", "stopped", "shelved", "shelved_offloaded"};
  if (!kStates.contains(s.vm_state)) return fail(invalid_state(action, s));
  return ok();
}

Status touch(store::Tx& tx, ServerRow& s, int64_t now) {
  s.updated_at = stored_time(now);
  return update_server(tx, s);
}

// ---- metadata

Result<http::Response> get_metadata(NovaApi& api, Call& call) {
  std::map<std::string, std::string> md;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_reader"));
    CONCORD_ASSIGN_OR_RETURN(md, read_metadata(tx, s.id));
    return ok();
  }));
  return http::Response::json(200, dump_json({{"metadata", to_json_object(md)}}));
}

// POST merges, PUT replaces.
Result<http::Response> set_metadata(NovaApi& api, Call& call, bool replace) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find("metadata");
  if (it == body.end() || body.size() != 1)
    return bad("Invalid input for field/attribute metadata. 'metadata' is a required property");
  CONCORD_RETURN_IF_ERROR(check_metadata(*it, "metadata"));
  std::map<std::string, std::string> result;
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(check_metadata_writable(call, s, "update metadata"));
    std::map<std::string, std::string> md;
    if (!replace) {
      CONCORD_ASSIGN_OR_RETURN(md, read_metadata(tx, s.id));
    }
    for (const auto& [k, v] : to_string_map(*it)) md[k] = v;
    CONCORD_RETURN_IF_ERROR(check_metadata_quota(tx, s.project_id, md.size()));
    CONCORD_RETURN_IF_ERROR(replace_metadata(tx, s.id, md));
    CONCORD_RETURN_IF_ERROR(touch(tx, s, now));
    result = std::move(md);
    return ok();
  }));
  return http::Response::json(200, dump_json({{"metadata", to_json_object(result)}}));
}

Result<http::Response> get_metadata_item(NovaApi& api, Call& call) {
  std::optional<std::string> value;
  const std::string key(call.param(1));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_reader"));
    CONCORD_ASSIGN_OR_RETURN(store::Rows r,
                             tx.query("SELECT value FROM compute_server_metadata WHERE "
                                      "server_id = ? AND key = ?",
                                      {s.id, key}));
    if (!r.empty()) value = r[0].text(0);
    return ok();
  }));
  if (!value) return fail(Code::kNotFound, "Metadata item was not found");
  return http::Response::json(200, dump_json({{"meta", {{key, *value}}}}));
}

Result<http::Response> put_metadata_item(NovaApi& api, Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find("meta");
  if (it == body.end() || body.size() != 1)
    return bad("Invalid input for field/attribute meta. 'meta' is a required property");
  CONCORD_RETURN_IF_ERROR(check_metadata(*it, "meta"));
  if (it->size() != 1) return bad("Request body contains too many items");
  const std::string key(call.param(1));
  if (it->begin().key() != key) return bad("Request body and URI mismatch");
  const std::string value = it->begin().value().get<std::string>();
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(check_metadata_writable(call, s, "update metadata"));
    CONCORD_ASSIGN_OR_RETURN(auto md, read_metadata(tx, s.id));
    md[key] = value;
    CONCORD_RETURN_IF_ERROR(check_metadata_quota(tx, s.project_id, md.size()));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("INSERT INTO compute_server_metadata (server_id, key, value) VALUES "
                           "(?, ?, ?) ON CONFLICT (server_id, key) DO UPDATE SET value = "
                           "excluded.value",
                           {s.id, key, value}));
    (void)n;
    return touch(tx, s, now);
  }));
  return http::Response::json(200, dump_json({{"meta", {{key, value}}}}));
}

Result<http::Response> delete_metadata_item(NovaApi& api, Call& call) {
  const std::string key(call.param(1));
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(check_metadata_writable(call, s, "delete metadata"));
    CONCORD_ASSIGN_OR_RETURN(int64_t n,
                             tx.exec("DELETE FROM compute_server_metadata WHERE server_id = ? "
                                     "AND key = ?",
                                     {s.id, key}));
    if (n == 0) return fail(Code::kNotFound, "Metadata item was not found");
    return touch(tx, s, now);
  }));
  return http::Response::empty(204);
}

// ---- tags (2.26)

constexpr size_t kMaxTags = 50;

Result<std::vector<std::string>> read_tags(store::Tx& tx, const std::string& id) {
  CONCORD_ASSIGN_OR_RETURN(store::Rows rows, tx.query("SELECT tag FROM compute_server_tags WHERE "
                                                      "server_id = ? ORDER BY tag",
                                                      {id}));
  std::vector<std::string> tags;
  for (const store::Row& r : rows) tags.push_back(r.text(0));
  return tags;
}

Result<http::Response> list_tags(NovaApi& api, Call& call) {
  std::vector<std::string> tags;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_reader"));
    CONCORD_ASSIGN_OR_RETURN(tags, read_tags(tx, s.id));
    return ok();
  }));
  return http::Response::json(200, dump_json({{"tags", tags}}));
}

Result<http::Response> replace_tags(NovaApi& api, Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find("tags");
  if (it == body.end() || body.size() != 1 || !it->is_array())
    return bad("Invalid input for field/attribute tags. 'tags' is a required property");
  if (it->size() > kMaxTags)
    return bad("The number of tags exceeded the per-server limit " + std::to_string(kMaxTags));
  std::set<std::string> tags;
  for (const Json& t : *it) {
    CONCORD_RETURN_IF_ERROR(check_tag(t));
    tags.insert(t.get<std::string>());
  }
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(check_tags_writable(s, "update tags"));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("DELETE FROM compute_server_tags WHERE server_id = ?", {s.id}));
    (void)n;
    for (const std::string& t : tags) {
      CONCORD_ASSIGN_OR_RETURN(
          int64_t m,
          tx.exec("INSERT INTO compute_server_tags (server_id, tag) VALUES (?, ?)", {s.id, t}));
      (void)m;
    }
    return touch(tx, s, now);
  }));
  return http::Response::json(
      200, dump_json({{"tags", std::vector<std::string>(tags.begin(), tags.end())}}));
}

Result<http::Response> delete_all_tags(NovaApi& api, Call& call) {
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(check_tags_writable(s, "delete tags"));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n, tx.exec("DELETE FROM compute_server_tags WHERE server_id = ?", {s.id}));
    (void)n;
    return touch(tx, s, now);
  }));
  return http::Response::empty(204);
}

Result<http::Response> check_tag_exists(NovaApi& api, Call& call) {
  bool found = false;
  const std::string tag(call.param(1));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_reader"));
    CONCORD_ASSIGN_OR_RETURN(store::Rows r, tx.query("SELECT 1 FROM compute_server_tags WHERE "
                                                     "server_id = ? AND tag = ?",
                                                     {s.id, tag}));
    found = !r.empty();
    return ok();
  }));
  if (!found) return fail(Code::kNotFound, "Tag '" + sanitize_utf8(tag) + "' could not be found.");
  return http::Response::empty(204);
}

Result<http::Response> add_tag(NovaApi& api, Call& call) {
  const std::string tag(call.param(1));
  CONCORD_RETURN_IF_ERROR(check_tag(Json(tag)));
  bool created = false;
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(check_tags_writable(s, "update tag"));
    CONCORD_ASSIGN_OR_RETURN(auto tags, read_tags(tx, s.id));
    if (std::find(tags.begin(), tags.end(), tag) != tags.end()) {
      created = false;
      return ok();
    }
    if (tags.size() >= kMaxTags)
      return bad("The number of tags exceeded the per-server limit " + std::to_string(kMaxTags));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("INSERT INTO compute_server_tags (server_id, tag) VALUES (?, ?)", {s.id, tag}));
    (void)n;
    created = true;
    return touch(tx, s, now);
  }));
  http::Response r = http::Response::empty(created ? 201 : 204);
  r.set_header("location", call.link("servers/" + std::string(call.param(0)) + "/tags/" + tag));
  return r;
}

Result<http::Response> delete_tag(NovaApi& api, Call& call) {
  const std::string tag(call.param(1));
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow s,
                             load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(check_tags_writable(s, "delete tag"));
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("DELETE FROM compute_server_tags WHERE server_id = ? AND tag = ?", {s.id, tag}));
    if (n == 0)
      return fail(Code::kNotFound, "Tag '" + sanitize_utf8(tag) + "' could not be found.");
    return touch(tx, s, now);
  }));
  return http::Response::empty(204);
}

// ---- instance actions

// From 2.21 the actions of a deleted server stay readable (Nova); a server being deleted or
// deleted is still only visible to its project and admins.
Result<ServerRow> load_for_actions(store::Tx& tx, NovaApi& api, const Call& call) {
  const std::string id(call.param(0));
  auto not_found = fail(Code::kNotFound, "Instance " + sanitize_utf8(id) + " could not be found.");
  if (!call.version.at_least(21)) return load_visible(tx, api, call, id, "project_reader");
  auto row = load_server(tx, id, true);
  if (!row) return row.error().code() == Code::kNotFound ? not_found : fail(row.error());
  CONCORD_RETURN_IF_ERROR(api.authorize(call, "project_reader", row->project_id,
                                        row->project_id != call.caller.project_id));
  return row;
}

Json action_json(const Call& call, const store::Row& r, const std::string& server_id) {
  // request_id, action, user_id, project_id, start_time, message, updated_at
  Json a = {{"action", r.text(1)},
            {"request_id", r.text(0)},
            {"user_id", r.text(2)},
            {"project_id", r.text(3)},
            {"start_time", usg_time(r.text(4))},
            {"message", r.is_null(5) ? Json(nullptr) : Json(r.text(5))},
            {"instance_uuid", server_id}};
  if (call.version.at_least(58)) a["updated_at"] = usg_time(r.text(6));
  return a;
}

constexpr const char* kActionColumns =
    "request_id, action, user_id, project_id, start_time, message, updated_at";

// From 2.58: limit (at most 1000, Nova's max_limit), marker (a request id), changes-since and,
// from 2.66, changes-before on updated_at, and a "links" next page when the limit was reached.
Result<http::Response> list_actions(NovaApi& api, Call& call) {
  constexpr int64_t kMaxLimit = 1000;
  servers::ChangesPaging paging;
  const bool paged = call.version.at_least(58);
  if (paged) {
    CONCORD_ASSIGN_OR_RETURN(paging, servers::parse_changes_paging(call));
  }
  const int64_t limit = paged ? (paging.limit < 0 ? kMaxLimit : std::min(paging.limit, kMaxLimit))
                              : std::numeric_limits<int64_t>::max();
  Json list = Json::array();
  std::string server_id, last;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s, load_for_actions(tx, api, call));
    server_id = s.id;
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string("SELECT ") + kActionColumns +
                     " FROM compute_instance_actions WHERE server_id = ? ORDER BY seq DESC",
                 {s.id}));
    size_t start = 0;
    if (paging.marker) {
      auto it = std::find_if(rows.begin(), rows.end(),
                             [&](const store::Row& r) { return r.text(0) == *paging.marker; });
      if (it == rows.end())
        return fail(Code::kInvalidArgument,
                    "Marker " + sanitize_utf8(*paging.marker) + " could not be found.");
      start = static_cast<size_t>(it - rows.begin()) + 1;
    }
    for (size_t i = start; i < rows.size(); ++i) {
      if (static_cast<int64_t>(list.size()) >= limit) break;
      if (!paging.in_window(rows[i].text(6))) continue;
      list.push_back(action_json(call, rows[i], s.id));
      last = rows[i].text(0);
    }
    return ok();
  }));
  Json body = {{"instanceActions", list}};
  if (paged && limit > 0 && static_cast<int64_t>(list.size()) == limit) {
    body["links"] = Json::array(
        {{{"rel", "next"},
          {"href", call.link("servers/" + server_id + "/os-instance-actions") +
                       "?limit=" + std::to_string(limit) + "&marker=" + url_encode(last)}}});
  }
  return http::Response::json(200, dump_json(body));
}

std::string host_hash(const std::string& project_id, const std::string& host) {
  if (host.empty()) return "";
  std::string data = project_id + host;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha224(), nullptr);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

Result<http::Response> show_action(NovaApi& api, Call& call) {
  const bool admin = call.caller.is_admin();
  const ApiVersion& v = call.version;
  Json out;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(ServerRow s, load_for_actions(tx, api, call));
    const std::string request_id(call.param(1));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query(std::string("SELECT ") + kActionColumns +
                     " FROM compute_instance_actions WHERE server_id = ? AND request_id = ?",
                 {s.id, request_id}));
    if (rows.empty())
      return fail(Code::kNotFound, "Action for request_id " + sanitize_utf8(request_id) +
                                       " on instance " + s.id + " not found");
    out = action_json(call, rows[0], s.id);
    if (admin || v.at_least(51)) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows ev,
          tx.query("SELECT event, start_time, finish_time, result, traceback, host FROM "
                   "compute_instance_action_events WHERE server_id = ? AND request_id = ? "
                   "ORDER BY start_time, event",
                   {s.id, request_id}));
      Json events = Json::array();
      for (const store::Row& e : ev) {
        Json j = {{"event", e.text(0)},
                  {"start_time", usg_time(e.text(1))},
                  {"finish_time", e.is_null(2) ? Json(nullptr) : Json(usg_time(e.text(2)))},
                  {"result", e.is_null(3) ? Json(nullptr) : Json(e.text(3))}};
        if (admin) j["traceback"] = e.is_null(4) ? Json(nullptr) : Json(e.text(4));
        if (v.at_least(62)) {
          j["hostId"] = host_hash(s.project_id, e.text(5));
          if (admin) j["host"] = e.text(5);
        }
        events.push_back(std::move(j));
      }
      out["events"] = std::move(events);
    }
    return ok();
  }));
  return http::Response::json(200, dump_json({{"instanceAction", out}}));
}

}  // namespace

void add_server_extra_routes(NovaApi& api) {
  using http::Method;
  NovaApi* a = &api;
  const std::string md = "/v2.1/servers/{server_id}/metadata";
  api.add(Method::kGet, md, "project_reader", [a](Call& c) { return get_metadata(*a, c); });
  api.add(Method::kPost, md, "project_member", [a](Call& c) { return set_metadata(*a, c, false); });
  api.add(Method::kPut, md, "project_member", [a](Call& c) { return set_metadata(*a, c, true); });
  api.add(Method::kGet, md + "/{key}", "project_reader",
          [a](Call& c) { return get_metadata_item(*a, c); });
  api.add(Method::kPut, md + "/{key}", "project_member",
          [a](Call& c) { return put_metadata_item(*a, c); });
  api.add(Method::kDelete, md + "/{key}", "project_member",
          [a](Call& c) { return delete_metadata_item(*a, c); });

  const ApiVersion v226{2, 26};
  const std::string tags = "/v2.1/servers/{server_id}/tags";
  api.add(
      Method::kGet, tags, "project_reader", [a](Call& c) { return list_tags(*a, c); }, v226);
  api.add(
      Method::kPut, tags, "project_member", [a](Call& c) { return replace_tags(*a, c); }, v226);
  api.add(
      Method::kDelete, tags, "project_member", [a](Call& c) { return delete_all_tags(*a, c); },
      v226);
  api.add(
      Method::kGet, tags + "/{tag}", "project_reader",
      [a](Call& c) { return check_tag_exists(*a, c); }, v226);
  api.add(
      Method::kPut, tags + "/{tag}", "project_member", [a](Call& c) { return add_tag(*a, c); },
      v226);
  api.add(
      Method::kDelete, tags + "/{tag}", "project_member",
      [a](Call& c) { return delete_tag(*a, c); }, v226);

  const std::string actions = "/v2.1/servers/{server_id}/os-instance-actions";
  api.add(Method::kGet, actions, "project_reader", [a](Call& c) { return list_actions(*a, c); });
  api.add(Method::kGet, actions + "/{request_id}", "project_reader",
          [a](Call& c) { return show_action(*a, c); });
}

}  // namespace concord::compute::servers
