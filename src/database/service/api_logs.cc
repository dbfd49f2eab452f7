// Trove's guest logs (docs/design/database.md, "Guest logs"): `GET /instances/{id}/log` lists
// the engine's logs (engine/guest_logs.h), `POST /instances/{id}/log` shows one or acts on it
// (publish, discard; enable/disable are a configuration group's parameters here), and Concord's
// `GET /instances/{id}/log/{name}` returns what was published (troveclient's `log tail` and
// `log save` read Trove's Swift container, which Concord does not have).
//
// Publishing is a request in the instance's desired state: the host's driver uploads the end of
// the log's file to the agent route `PUT /agent/v1/database/instances/{id}/guest-logs/{name}`
// (at most engine::kGuestLogPublishBytes), which stores it in db_guest_logs. The publish call
// (add_applied) answers once the upload is stored or the instance's server applied the
// request, with what was stored.
#include <charconv>

#include "compute/driver/util.h"  // read_file, sha256_hex
#include "database/engine/guest_logs.h"
#include "database/service/api_internal.h"

namespace concord::database::service {
namespace {

constexpr int64_t kMaxTailLines = 100000;

struct LogRow {
  std::string request_id, published_request, published;
  int64_t published_bytes = 0, file_bytes = 0;
};

Result<std::optional<LogRow>> load_log_row(store::Tx& tx, const std::string& instance_id,
                                           std::string_view name) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT request_id, published_request, published, published_bytes, file_bytes "
               "FROM db_guest_logs WHERE instance_id = ? AND name = ?",
               {instance_id, std::string(name)}));
  if (rows.empty()) return std::optional<LogRow>();
  return std::optional<LogRow>(LogRow{rows[0].text(0), rows[0].text(1), rows[0].text(2),
                                      rows[0].integer(3), rows[0].integer(4)});
}

// The engine's log of that name, or Trove's 404 naming the logs it has.
Result<const engine::GuestLogSpec*> find_log(const std::string& engine_name,
                                             const std::string& name) {
  if (const engine::GuestLogSpec* spec = engine::find_guest_log(engine_name, name)) return spec;
  std::string names;
  for (const engine::GuestLogSpec& s : engine::guest_log_catalog(engine_name)) {
    names += (names.empty() ? "" : ", ") + std::string(s.name);
  }
  return fail(Code::kNotFound, "Log '" + sanitize_utf8(name) + "' cannot be found: the logs of " +
                                   engine_name + " instances are " +
                                   (names.empty() ? "none" : names) + ".");
}

// Whether the action key is asked for: troveclient sends 1, curl users may send true.
bool asked(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number_integer()) return it->get<int64_t>() != 0;
  return true;  // anything else is refused by the caller's type check
}

}  // namespace

void DatabaseService::Impl::add_log_routes() {
  const std::string r = "project_reader";
  const std::string m = "project_member";
  add(Method::kGet, "/instances/{id}/log", &Impl::list_guest_logs, r);
  add_applied(Method::kPost, "/instances/{id}/log", &Impl::guest_log_action, m);
  add(Method::kGet, "/instances/{id}/log/{name}", &Impl::guest_log_content, r);
  add_agent(Method::kPut, "/instances/{id}/guest-logs/{name}", &Impl::agent_put_guest_log);
}

Status DatabaseService::Impl::add_log_state(store::Tx& tx, const InstanceRow& inst,
                                            engine::DesiredState& st) {
  CONCORD_ASSIGN_OR_RETURN(
      store::Rows rows,
      tx.query("SELECT request_id, name FROM db_guest_logs WHERE instance_id = ? AND "
               "request_id <> '' AND request_id <> published_request ORDER BY name",
               {inst.id}));
  for (const store::Row& row : rows) st.log_publish.push_back({row.text(0), row.text(1)});
  return ok();
}

Result<Json> DatabaseService::Impl::guest_log_view(store::Tx& tx, const InstanceRow& inst,
                                                   const engine::GuestLogSpec& spec) {
  CONCORD_ASSIGN_OR_RETURN(std::optional<LogRow> row, load_log_row(tx, inst.id, spec.name));
  bool enabled = spec.enabled_by.empty();
  if (!enabled) {
    engine::DesiredState st;  // the parameters the instance's engine is given
    CONCORD_RETURN_IF_ERROR(add_configuration_state(tx, inst, st));
    auto it = st.parameters.find(std::string(spec.enabled_by));
    enabled = it != st.parameters.end() && it->second == "on";
  }
  const bool published = row && !row->published.empty();
  const int64_t pending =
      published ? std::max<int64_t>(0, row->file_bytes - row->published_bytes) : 0;
  // Trove's statuses: Disabled (its parameter is off), Ready (nothing published), Published,
  // Partial (only the end of the file was published).
  std::string status = !enabled      ? "Disabled"
                       : !published  ? "Ready"
                       : pending > 0 ? "Partial"
                                     : "Published";
  Json out = {{"name", std::string(spec.name)},
              {"type", "USER"},
              {"status", status},
              {"published", published ? row->published_bytes : 0},
              {"pending", pending},
              {"container", nullptr},
              {"prefix", nullptr},
              {"metafile", nullptr},
              {"description", std::string(spec.description)},
              {"published_at", published ? Json(row->published) : Json(nullptr)}};
  if (!spec.enabled_by.empty()) out["parameter"] = std::string(spec.enabled_by);
  return out;
}

Result<Response> DatabaseService::Impl::list_guest_logs(Call& c) {
  Json logs = Json::array();
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
    for (const engine::GuestLogSpec& spec : engine::guest_log_catalog(inst.engine)) {
      CONCORD_ASSIGN_OR_RETURN(Json v, guest_log_view(tx, inst, spec));
      logs.push_back(std::move(v));
    }
    return ok();
  }));
  return Response::json(200, dump_json({{"logs", std::move(logs)}}));
}

Result<Response> DatabaseService::Impl::guest_log_action(Call& c) {
  auto body = parse_json(c.req.body);
  if (!body || !body->is_object()) {
    return fail(
        bad("The request body must be a JSON object such as {\"name\": \"general\", "
            "\"publish\": 1}."));
  }
  auto name_it = body->find("name");
  if (name_it == body->end() || !name_it->is_string()) {
    return fail(bad("'name' (the log's name) is required and must be a string."));
  }
  const std::string name = name_it->get<std::string>();
  for (const char* key : {"enable", "disable", "publish", "discard"}) {
    auto it = body->find(key);
    if (it != body->end() && !it->is_null() && !it->is_boolean() && !it->is_number_integer()) {
      return fail(bad(std::string("'") + key + "' must be 1 or 0 (or true or false)."));
    }
  }
  std::string instance_id, engine_name;
  const engine::GuestLogSpec* spec = nullptr;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
    instance_id = inst.id;
    engine_name = inst.engine;
    return ok();
  }));
  CONCORD_ASSIGN_OR_RETURN(spec, find_log(engine_name, name));
  if (asked(*body, "enable") || asked(*body, "disable")) {
    if (spec->enabled_by.empty()) {
      return fail(bad("Log '" + name + "' is always on; it cannot be " +
                      (asked(*body, "enable") ? "enabled" : "disabled") + "."));
    }
    return fail(bad("Log '" + name + "' follows the parameter " + std::string(spec->enabled_by) +
                    ": set it to 1 or 0 in a configuration group attached to the instance "
                    "(openstack database configuration create/attach)."));
  }
  // Trove's order: discard what was published, then publish anew (`log set --discard
  // --publish`).
  if (asked(*body, "discard")) {
    CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(int64_t n,
                               tx.exec("DELETE FROM db_guest_logs WHERE instance_id = ? AND "
                                       "name = ?",
                                       {instance_id, name}));
      (void)n;
      return ok();
    }));
  }
  if (asked(*body, "publish")) {
    // Not change_state: a replica's logs are its own, and a publish must not clear the
    // instance's task (a resize under way, say).
    int64_t revision = 0;
    std::string server;
    const std::string request = new_uuid();
    CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
      CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
      CONCORD_ASSIGN_OR_RETURN(std::optional<LogRow> row, load_log_row(tx, inst.id, name));
      if (row) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec("UPDATE db_guest_logs SET request_id = ?, requested = ? WHERE "
                               "instance_id = ? AND name = ?",
                               {request, trove_time(clock_.now()), inst.id, name}));
        (void)n;
      } else {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec("INSERT INTO db_guest_logs (instance_id, name, request_id, "
                               "requested) VALUES (?, ?, ?, ?)",
                               {inst.id, name, request, trove_time(clock_.now())}));
        (void)n;
      }
      CONCORD_ASSIGN_OR_RETURN(
          int64_t n, tx.exec("UPDATE db_instances SET state_revision = state_revision + 1, "
                             "updated = ? WHERE id = ?",
                             {trove_time(clock_.now()), inst.id}));
      (void)n;
      revision = inst.state_revision + 1;
      server = primary_server(inst);
      return ok();
    }));
    CONCORD_RETURN_IF_ERROR(sync_server(instance_id));
    c.changed_instance = server;  // the server that publishes it: the primary member's
    c.changed_revision = revision;
    // The upload is what the caller waits for; an instance whose engine is stopped never
    // reports the revision applied, but its agent uploads the log all the same.
    c.late.done = [this, instance_id, name, request]() {
      bool published = false;
      Status st = store_.read([&](store::Tx& tx) -> Status {
        CONCORD_ASSIGN_OR_RETURN(std::optional<LogRow> row, load_log_row(tx, instance_id, name));
        published = row && row->published_request == request;
        return ok();
      });
      return st && published;
    };
  }
  // The answer is rendered when it is sent: after a publish, once the request is applied (or
  // the wait ran out), so it shows what was published.
  const std::string id = c.param(1);
  const identity::AuthContext caller = c.caller;
  // It runs on the apply watcher's thread, where nothing may throw.
  c.late.render = [this, id, caller, spec]() -> Response {
    try {
      Json view;
      Status st = store_.read([&](store::Tx& tx) -> Status {
        CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, caller, id));
        CONCORD_ASSIGN_OR_RETURN(view, guest_log_view(tx, inst, *spec));
        return ok();
      });
      if (!st) return trove_error(status_of(st.error().code()), st.error().message());
      return Response::json(200, dump_json({{"log", std::move(view)}}));
    } catch (const std::exception& e) {
      logger("database")->error("guest log {} of instance {}: {}", spec->name, id, e.what());
      return trove_error(500, "Internal error while reading the log's state.");
    }
  };
  return c.late.render();
}

Result<Response> DatabaseService::Impl::guest_log_content(Call& c) {
  int64_t lines = 0;
  if (auto q = c.req.query_param("lines")) {
    auto [end, ec] = std::from_chars(q->data(), q->data() + q->size(), lines);
    if (ec != std::errc() || end != q->data() + q->size() || lines < 1 || lines > kMaxTailLines) {
      return fail(
          bad("'lines' must be an integer from 1 to " + std::to_string(kMaxTailLines) + "."));
    }
  }
  std::string content;
  CONCORD_RETURN_IF_ERROR(store_.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(InstanceRow inst, load_instance(tx, c, c.param(1)));
    const std::string& name = c.param(2);
    CONCORD_RETURN_IF_ERROR(find_log(inst.engine, name));
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows rows,
        tx.query("SELECT content FROM db_guest_logs WHERE instance_id = ? AND name = ? AND "
                 "published <> ''",
                 {inst.id, name}));
    if (rows.empty()) {
      return fail(Code::kNotFound, "Log '" + name + "' of instance '" + inst.id +
                                       "' has not been published: POST {\"name\": \"" + name +
                                       "\", \"publish\": 1} to /instances/" + inst.id +
                                       "/log first.");
    }
    content = rows[0].text(0);
    return ok();
  }));
  if (lines > 0) {
    // Cut after the newline that ends the line before the last `lines` ones (none: keep all).
    size_t end = content.size();
    if (end > 0 && content.back() == '\n') --end;  // the last line's own newline
    size_t cut = 0;
    for (int64_t n = 0; n < lines; ++n) {
      const size_t nl = end == 0 ? std::string::npos : content.rfind('\n', end - 1);
      if (nl == std::string::npos) {
        cut = 0;
        break;
      }
      cut = nl + 1;
      end = nl;
    }
    content.erase(0, cut);
  }
  Response r;
  r.status = 200;
  r.set_header("Content-Type", "text/plain; charset=utf-8");
  r.body = std::move(content);
  return r;
}

Result<Response> DatabaseService::Impl::agent_put_guest_log(Request& req, const std::string& host) {
  const std::string& member = req.params.at(0);
  const std::string& name = req.params.at(1);
  CONCORD_ASSIGN_OR_RETURN(std::string sha, header_sha256(req));
  CONCORD_ASSIGN_OR_RETURN(int64_t file_bytes, header_int(req, "x-concord-log-file-bytes"));
  const std::string request(req.header("x-concord-log-request"));
  if (request.empty()) return fail(bad("X-Concord-Log-Request names the publish request."));
  CONCORD_ASSIGN_OR_RETURN(const std::string instance_id, require_instance_host(member, host));
  std::string body = req.body;
  if (!req.body_file.empty()) {
    CONCORD_ASSIGN_OR_RETURN(body, compute::driver::read_file(req.body_file));
  }
  if (static_cast<int64_t>(body.size()) > engine::kGuestLogPublishBytes) {
    return fail(bad("a published log is at most " + std::to_string(engine::kGuestLogPublishBytes) +
                    " bytes"));
  }
  if (compute::driver::sha256_hex(body) != sha) {
    return fail(bad("checksum mismatch: the agent sent SHA-256 " + sha + "; upload it again."));
  }
  // Stored as text: a log is text, and the store's text columns are UTF-8 without NUL.
  std::string text = sanitize_utf8(body);
  std::erase(text, '\0');
  CONCORD_RETURN_IF_ERROR(store_.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(std::optional<LogRow> row, load_log_row(tx, instance_id, name));
    // Only the request the row still asks for: one discarded or asked again since is dropped.
    if (!row || row->request_id != request) return ok();
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec(
            "UPDATE db_guest_logs SET published_request = ?, published = ?, content = ?, "
            "published_bytes = ?, file_bytes = ? WHERE instance_id = ? AND name = ?",
            {request, trove_time(clock_.now()), text, static_cast<int64_t>(body.size()),
             std::max<int64_t>(file_bytes, static_cast<int64_t>(body.size())), instance_id, name}));
    (void)n;
    return ok();
  }));
  return Response::empty(204);
}

}  // namespace concord::database::service
