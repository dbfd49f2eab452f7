// The servers collection: create (validation, quota, scheduling and the rows, all in one store
// write transaction), list (filters, sorting, keyset paging; one query per page plus one batched
// query per kind of extra), show, update and delete. Actions, metadata, tags, instance actions
// and console output are in api_server_actions.cc and api_server_extras.cc.
//
// Decisions where Nova depends on services Concord does not have (see docs/design/compute.md):
//   * no Neutron: `networks` absent (any version) or an empty list means "auto"; "none"/"auto"
//     strings from 2.37; a list naming networks or ports is 400 (there are none to find);
//     security_groups accepts only "default";
//   * no Cinder: block_device_mapping_v2 accepts only image-backed local disks;
//   * personality (file injection, <= 2.56) is refused with 400: use user_data or config drive;
//   * the name filter is a regular expression with a linear-time matcher (NameMatcher).
#include <algorithm>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "base/random.h"
#include "base/time_format.h"
#include "compute/scheduler/scheduler.h"
#include "compute/service/api_servers_internal.h"
#include "compute/service/flavors.h"
#include "compute/service/metering.h"
#include "compute/service/placement.h"
#include "compute/service/quota.h"
#include "compute/service/report.h"
#include "compute/service/view_cache.h"

namespace concord::compute {

using servers::bad_field;
using servers::now_ms;
using Call = NovaApi::Call;

namespace {

std::unexpected<Error> bad(std::string message) {
  return fail(Code::kInvalidArgument, std::move(message));
}

// Nova's sanitize_hostname: spaces and underscores become '-', other characters outside
// [A-Za-z0-9.-] are dropped, lower case, no leading/trailing '.' or '-', at most 63 characters.
std::string sanitize_hostname(std::string_view name) {
  std::string out;
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == ' ' || c == '_') {
      out.push_back('-');
    } else if (std::isalnum(u) || c == '.' || c == '-') {
      out.push_back(static_cast<char>(std::tolower(u)));
    }
  }
  auto trim = [&] {
    while (!out.empty() && (out.front() == '.' || out.front() == '-')) out.erase(0, 1);
    while (!out.empty() && (out.back() == '.' || out.back() == '-')) out.pop_back();
  };
  trim();
  if (out.size() > 63) out.resize(63);
  trim();
  return out;
}

Result<int64_t> positive_int(const Json& v, std::string_view field) {
  int64_t n = 0;
  if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c)) != 0;
        }))
      return bad(bad_field(field, v, "is not a positive integer"));
    n = std::stoll(s);
  } else {
    return bad(bad_field(field, v, "is not of type 'integer', 'string'"));
  }
  if (n < 1) return bad(bad_field(field, v, "is less than the minimum of 1"));
  return n;
}

// Nova's boolean parameter type: JSON booleans and the usual strings.
Result<bool> parse_bool(const Json& v, std::string_view field) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "true" || s == "1" || s == "t" || s == "on" || s == "y" || s == "yes") return true;
    if (s == "false" || s == "0" || s == "f" || s == "off" || s == "n" || s == "no" || s.empty())
      return false;
  }
  return bad(bad_field(field, v, "is not a boolean"));
}

Result<bool> query_bool(const std::string& value, std::string_view name) {
  std::string s = value;
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "true" || s == "1" || s == "t" || s == "on" || s == "y" || s == "yes") return true;
  if (s == "false" || s == "0" || s == "f" || s == "off" || s == "n" || s == "no") return false;
  return bad("Invalid value '" + sanitize_utf8(value) + "' for " + std::string(name) +
             ": must be a boolean.");
}

// ---------------------------------------------------------------------------------------------
// Create

struct CreateSpec {
  std::string name;
  std::string image_ref;
  std::string flavor_ref;
  std::string admin_pass;
  std::map<std::string, std::string> metadata;
  std::string network = "auto";
  std::optional<std::string> key_name;
  std::optional<std::string> user_data;
  std::string az;          // requested zone ("" any)
  std::string force_host;  // admin "zone:host"
  int64_t min_count = 1, max_count = 1;
  bool return_reservation_id = false;
  std::optional<std::string> group_id;
  std::vector<std::string> different_host;
  std::string access_ipv4, access_ipv6;
  std::string disk_config = "MANUAL";
  bool config_drive = false;
  std::optional<std::string> description;
  std::vector<std::string> tags;
};

bool known_create_key(std::string_view k, const ApiVersion& v) {
  static const std::set<std::string, std::less<>> base = {"name",
                                                          "imageRef",
                                                          "flavorRef",
                                                          "adminPass",
                                                          "metadata",
                                                          "networks",
                                                          "OS-DCF:diskConfig",
                                                          "accessIPv4",
                                                          "accessIPv6",
                                                          "availability_zone",
                                                          "block_device_mapping",
                                                          "block_device_mapping_v2",
                                                          "config_drive",
                                                          "key_name",
                                                          "min_count",
                                                          "max_count",
                                                          "return_reservation_id",
                                                          "security_groups",
                                                          "user_data"};
  if (base.contains(k)) return true;
  if (k == "personality") return !v.at_least(57);
  if (k == "description") return v.at_least(19);
  if (k == "tags") return v.at_least(52);
  if (k == "trusted_image_certificates") return v.at_least(63);
  if (k == "host" || k == "hypervisor_hostname") return v.at_least(74);
  return false;
}

Result<CreateSpec> parse_create(const Call& call, const Json& body, size_t max_user_data) {
  const ApiVersion& v = call.version;
  for (auto& [k, val] : body.items()) {
    (void)val;
    if (k != "server" && k != "os:scheduler_hints" && k != "OS-SCH-HNT:scheduler_hints")
      return bad("Invalid input for field/attribute. Additional properties are not allowed ('" +
                 sanitize_utf8(k) + "' was unexpected)");
  }
  auto it = body.find("server");
  if (it == body.end() || !it->is_object())
    return bad("Invalid input for field/attribute server. 'server' is a required property");
  const Json& s = *it;
  for (auto& [k, val] : s.items()) {
    (void)val;
    if (!known_create_key(k, v))
      return bad(
          "Invalid input for field/attribute server. Additional properties are not "
          "allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
  }
  CreateSpec c;
  if (!s.contains("name"))
    return bad("Invalid input for field/attribute server. 'name' is a required property");
  CONCORD_RETURN_IF_ERROR(servers::check_name(s["name"], "name"));
  c.name = s["name"].get<std::string>();

  // Image: a uuid or a link ending in one; "" only with a block device mapping (below).
  if (auto i = s.find("imageRef"); i != s.end()) {
    if (!i->is_string()) return bad(bad_field("imageRef", *i, "is not of type 'string'"));
    c.image_ref = i->get<std::string>();
    if (!c.image_ref.empty()) {
      std::string id = servers::ref_id(c.image_ref);
      if (!servers::is_uuid(id)) return bad("Invalid imageRef provided.");
      c.image_ref = id;
    }
  }
  if (auto b = s.find("block_device_mapping"); b != s.end()) {
    return bad("Block device mapping (legacy v1) is not supported: there is no volume service.");
  }
  if (auto b = s.find("block_device_mapping_v2"); b != s.end()) {
    if (!b->is_array()) return bad(bad_field("block_device_mapping_v2", *b, "is not an array"));
    for (const Json& d : *b) {
      if (!d.is_object()) return bad(bad_field("block_device_mapping_v2", d, "is not an object"));
      std::string source = d.value("source_type", "");
      std::string dest = d.value("destination_type", "local");
      if (source != "image" || dest != "local")
        return bad("Block device mapping with source_type '" + sanitize_utf8(source) +
                   "' and destination_type '" + sanitize_utf8(dest) +
                   "' is not supported: there is no volume service; only image-backed local "
                   "disks are.");
      auto u = d.find("uuid");
      if (u == d.end() || !u->is_string() || !servers::is_uuid(u->get<std::string>()))
        return bad("Invalid imageRef provided.");
      std::string uuid = u->get<std::string>();
      if (c.image_ref.empty()) c.image_ref = uuid;
      if (uuid != c.image_ref)
        return bad("The block device mapping must boot the image given as imageRef.");
    }
  }
  if (c.image_ref.empty()) return bad("Invalid imageRef provided.");

  auto f = s.find("flavorRef");
  if (f == s.end())
    return bad("Invalid input for field/attribute server. 'flavorRef' is a required property");
  if (f->is_number_integer()) {
    c.flavor_ref = std::to_string(f->get<int64_t>());
  } else if (f->is_string() && !f->get<std::string>().empty()) {
    c.flavor_ref = servers::ref_id(f->get<std::string>());
  } else {
    return bad("Invalid flavorRef provided.");
  }
  if (c.flavor_ref.empty() || c.flavor_ref.size() > 255) return bad("Invalid flavorRef provided.");

  if (auto p = s.find("adminPass"); p != s.end()) {
    if (!p->is_string()) return bad(bad_field("adminPass", *p, "is not of type 'string'"));
    c.admin_pass = p->get<std::string>();
  }
  if (c.admin_pass.empty()) c.admin_pass = servers::generate_password();

  if (auto m = s.find("metadata"); m != s.end()) {
    CONCORD_RETURN_IF_ERROR(servers::check_metadata(*m, "metadata"));
    c.metadata = servers::to_string_map(*m);
  }

  if (auto n = s.find("networks"); n != s.end()) {
    if (n->is_string()) {
      std::string t = n->get<std::string>();
      if (!v.at_least(37) || (t != "none" && t != "auto"))
        return bad(bad_field("networks", *n, "is not valid under any of the given schemas"));
      c.network = t;
    } else if (n->is_array()) {
      for (const Json& item : *n) {
        if (!item.is_object()) return bad(bad_field("networks", item, "is not an object"));
        if (auto port = item.find("port"); port != item.end() && !port->is_null()) {
          return bad("Port " + (port->is_string() ? sanitize_utf8(port->get<std::string>()) : "") +
                     " could not be found.");
        }
        auto uuid = item.find("uuid");
        if (uuid == item.end() || !uuid->is_string())
          return bad("Bad networks format: network uuid is not in proper format");
        if (!servers::is_uuid(uuid->get<std::string>()))
          return bad("Bad networks format: network uuid is not in proper format (" +
                     sanitize_utf8(uuid->get<std::string>()) + ")");
        return bad("Network " + uuid->get<std::string>() + " could not be found.");
      }
      c.network = "auto";
    } else {
      return bad(bad_field("networks", *n, "is not valid under any of the given schemas"));
    }
  }
  // Nova requires `networks` from 2.37 on. Concord tolerates its absence (as `auto`): with no
  // Neutron, Tempest (tempest/lib/common/fixed_network.py) creates servers without it.

  if (auto k = s.find("key_name"); k != s.end() && !k->is_null()) {
    if (!k->is_string() || k->get<std::string>().empty() || k->get<std::string>().size() > 255)
      return bad(bad_field("key_name", *k, "is not a valid key name"));
    c.key_name = k->get<std::string>();
  }
  if (auto u = s.find("user_data"); u != s.end() && !u->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(std::string ud, servers::check_user_data(*u, max_user_data));
    c.user_data = ud;
  }
  if (auto a = s.find("availability_zone"); a != s.end() && !a->is_null()) {
    if (!a->is_string() || a->get<std::string>().empty() || a->get<std::string>().size() > 255)
      return bad(bad_field("availability_zone", *a, "is not a valid availability zone"));
    std::string az = a->get<std::string>();
    size_t colon = az.find(':');
    if (colon != std::string::npos) {
      c.force_host = az;
      c.az = az.substr(0, colon);
      if (scheduler::forced_host_name(az).empty())
        return bad("Invalid availability zone '" + sanitize_utf8(az) + "'");
    } else {
      c.az = az;
    }
  }
  if (auto h = s.find("host"); h != s.end() && !h->is_null()) {
    if (!h->is_string() || h->get<std::string>().empty())
      return bad(bad_field("host", *h, "is not a valid host name"));
    c.force_host = h->get<std::string>();
  }
  if (auto h = s.find("hypervisor_hostname"); h != s.end() && !h->is_null()) {
    if (!h->is_string() || h->get<std::string>().empty())
      return bad(bad_field("hypervisor_hostname", *h, "is not a valid host name"));
    if (c.force_host.empty()) c.force_host = h->get<std::string>();
  }
  if (!c.force_host.empty() && !call.caller.is_admin()) {
    return fail(Code::kPermissionDenied,
                "Policy doesn't allow os_compute_api:servers:create:forced_host to be performed.");
  }

  if (auto m = s.find("min_count"); m != s.end()) {
    CONCORD_ASSIGN_OR_RETURN(c.min_count, positive_int(*m, "min_count"));
  }
  if (auto m = s.find("max_count"); m != s.end()) {
    CONCORD_ASSIGN_OR_RETURN(c.max_count, positive_int(*m, "max_count"));
  } else {
    c.max_count = c.min_count;
  }
  if (c.min_count > c.max_count) return bad("min_count must be <= max_count");
  if (auto r = s.find("return_reservation_id"); r != s.end()) {
    CONCORD_ASSIGN_OR_RETURN(c.return_reservation_id, parse_bool(*r, "return_reservation_id"));
  }

  for (std::string_view key : {"os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"}) {
    auto h = body.find(std::string(key));
    if (h == body.end()) continue;
    if (!h->is_object()) return bad(bad_field(key, *h, "is not of type 'object'"));
    if (auto g = h->find("group"); g != h->end()) {
      if (!g->is_string() || !servers::is_uuid(g->get<std::string>()))
        return bad(bad_field("group", *g, "is not a 'uuid'"));
      c.group_id = g->get<std::string>();
    }
    if (auto d = h->find("different_host"); d != h->end()) {
      std::vector<Json> items =
          d->is_array() ? std::vector<Json>(d->begin(), d->end()) : std::vector<Json>{*d};
      for (const Json& i : items) {
        if (!i.is_string() || !servers::is_uuid(i.get<std::string>()))
          return bad(bad_field("different_host", i, "is not a 'uuid'"));
        c.different_host.push_back(i.get<std::string>());
      }
    }
  }

  if (auto a = s.find("accessIPv4"); a != s.end() && !a->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(c.access_ipv4, servers::canonical_ip(*a, false, "accessIPv4"));
  }
  if (auto a = s.find("accessIPv6"); a != s.end() && !a->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(c.access_ipv6, servers::canonical_ip(*a, true, "accessIPv6"));
  }
  if (auto d = s.find("OS-DCF:diskConfig"); d != s.end()) {
    if (!d->is_string() || (*d != "AUTO" && *d != "MANUAL"))
      return bad(bad_field("OS-DCF:diskConfig", *d, "is not one of ['AUTO', 'MANUAL']"));
    c.disk_config = d->get<std::string>();
  }
  if (auto d = s.find("config_drive"); d != s.end() && !d->is_null()) {
    CONCORD_ASSIGN_OR_RETURN(c.config_drive, parse_bool(*d, "config_drive"));
  }
  if (auto d = s.find("description"); d != s.end() && !d->is_null()) {
    if (!d->is_string()) return bad(bad_field("description", *d, "is not of type 'string'"));
    size_t chars = 0;
    for (unsigned char ch : d->get_ref<const std::string&>()) chars += (ch & 0xC0) != 0x80;
    if (chars > 255) return bad(bad_field("description", *d, "is too long"));
    c.description = d->get<std::string>();
  }
  if (auto t = s.find("tags"); t != s.end()) {
    if (!t->is_array()) return bad(bad_field("tags", *t, "is not of type 'array'"));
    if (t->size() > 50) return bad(bad_field("tags", *t, "has more than 50 items"));
    std::set<std::string> seen;
    for (const Json& tag : *t) {
      CONCORD_RETURN_IF_ERROR(servers::check_tag(tag));
      if (seen.insert(tag.get<std::string>()).second) c.tags.push_back(tag.get<std::string>());
    }
  }
  if (auto g = s.find("security_groups"); g != s.end()) {
    if (!g->is_array()) return bad(bad_field("security_groups", *g, "is not of type 'array'"));
    for (const Json& item : *g) {
      std::string name = item.is_object() && item.contains("name") && item["name"].is_string()
                             ? item["name"].get<std::string>()
                             : std::string();
      if (name != "default")
        return bad("Security group " + sanitize_utf8(name) +
                   " not found: only the 'default' security group exists (no network service).");
    }
  }
  if (s.contains("personality")) {
    return bad(
        "Personality (file injection) is not supported: pass files with user_data or "
        "the config drive.");
  }
  if (auto t = s.find("trusted_image_certificates"); t != s.end() && !t->is_null()) {
    return bad("Image certificate validation is not enabled.");
  }
  return c;
}

// Disk a flavor takes on a host: root + ephemeral + swap (rounded up to GiB), as Nova claims.
scheduler::Resources flavor_resources(const FlavorSnapshot& f) {
  return {f.vcpus, f.ram_mb, f.disk_gb + f.ephemeral_gb + (f.swap_mb + 1023) / 1024};
}

scheduler::GroupPolicy::Kind policy_kind(std::string_view p) {
  using K = scheduler::GroupPolicy::Kind;
  if (p == "affinity") return K::kAffinity;
  if (p == "anti-affinity") return K::kAntiAffinity;
  if (p == "soft-affinity") return K::kSoftAffinity;
  if (p == "soft-anti-affinity") return K::kSoftAntiAffinity;
  return K::kNone;
}

std::string reservation_id() {
  static constexpr std::string_view kChars = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out = "r-";
  for (unsigned char b : random_bytes(8)) out.push_back(kChars[b % kChars.size()]);
  return out;
}

constexpr std::string_view kNoValidHost =
    "No valid host was found. There are not enough hosts available.";

Result<http::Response> create_server(NovaApi& api, Call& call) {
  ComputeContext& ctx = api.ctx();
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  CONCORD_ASSIGN_OR_RETURN(CreateSpec c, parse_create(call, body, ctx.options.max_user_data_bytes));

  auto image = ctx.images.get(c.image_ref, call.caller);
  if (!image) {
    if (image.error().code() == Code::kNotFound) return bad("Can not find requested image");
    return fail(image.error());
  }
  if (image->status != "active") return bad("Image " + image->id + " is not active.");
  const std::string driver = image->container_format == "docker" ? "container" : "vm";
  const bool admin = call.caller.is_admin();
  const std::string project = call.caller.project_id;

  std::vector<std::string> ids;
  std::string resv;
  Status s = servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    ids.clear();
    resv = reservation_id();
    const int64_t now = now_ms(ctx.clock);
    auto flavor = load_flavor(tx, c.flavor_ref, project, admin);
    if (!flavor) {
      if (flavor.error().code() == Code::kNotFound) return bad("Invalid flavorRef provided.");
      return fail(flavor.error());
    }
    const FlavorSnapshot& fl = *flavor;
    if (image->min_ram > fl.ram_mb) return bad("Flavor's memory is too small for requested image.");
    if (fl.disk_gb > 0 &&
        (image->min_disk > fl.disk_gb || image->size > fl.disk_gb * int64_t{1024} * 1024 * 1024))
      return bad("Flavor's disk is too small for requested image.");
    CONCORD_RETURN_IF_ERROR(servers::check_metadata_quota(tx, project, c.metadata.size()));

    std::optional<std::string> key_data;
    if (c.key_name) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows k, tx.query("SELECT public_key FROM compute_keypairs WHERE user_id = ? AND "
                                  "name = ?",
                                  {call.caller.user_id, *c.key_name}));
      if (k.empty()) return bad("Invalid key_name provided.");
      key_data = k[0].text(0);
    }

    CONCORD_ASSIGN_OR_RETURN(int64_t allowed, instances_allowed(tx, project, c.min_count,
                                                                c.max_count, fl.vcpus, fl.ram_mb));

    scheduler::Request req;
    req.per_instance = flavor_resources(fl);
    req.count = static_cast<int>(allowed);
    req.availability_zone = c.az;
    req.driver = driver;
    if (auto h = image->properties.find("hypervisor_type"); h != image->properties.end())
      req.required_traits["hypervisor_type"] = h->second;
    req.force_host = c.force_host;

    if (c.group_id) {
      CONCORD_ASSIGN_OR_RETURN(store::Rows g,
                               tx.query("SELECT policy, max_server_per_host, project_id FROM "
                                        "compute_server_groups WHERE id = ?",
                                        {*c.group_id}));
      if (g.empty() || (!admin && g[0].text(2) != project))
        return bad("Invalid server group: group " + *c.group_id + " could not be found.");
      req.group.kind = policy_kind(g[0].text(0));
      if (!g[0].is_null(1) && g[0].integer(1) >= 1)
        req.group.max_server_per_host = static_cast<int>(g[0].integer(1));
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows members,
          tx.query("SELECT s.host FROM compute_server_group_members m JOIN compute_servers s ON "
                   "s.id = m.server_id WHERE m.group_id = ? AND s.deleted = 0",
                   {*c.group_id}));
      for (const store::Row& m : members) {
        if (!m.is_null(0)) req.group.member_hosts.push_back(m.text(0));
      }
      CONCORD_ASSIGN_OR_RETURN(QuotaLimits limits, project_limits(tx, project));
      auto lim = limits.find("server_group_members");
      if (lim != limits.end() && lim->second >= 0 &&
          static_cast<int64_t>(members.size()) + allowed > lim->second)
        return fail(Code::kResourceExhausted, "Quota exceeded, too many servers in group");
    }
    for (const std::string& other : c.different_host) {
      CONCORD_ASSIGN_OR_RETURN(store::Rows h,
                               tx.query("SELECT host FROM compute_servers WHERE id = ? AND "
                                        "project_id = ? AND host IS NOT NULL",
                                        {other, project}));
      if (!h.empty()) req.ignore_hosts.push_back(h[0].text(0));
    }

    CONCORD_ASSIGN_OR_RETURN(
        std::vector<scheduler::HostState> hosts,
        load_hosts(tx, now, static_cast<int64_t>(ctx.options.down_after.count())));
    if (!c.az.empty()) {
      bool known = std::any_of(hosts.begin(), hosts.end(), [&](const scheduler::HostState& h) {
        return h.availability_zone == c.az;
      });
      if (!known) return bad("The requested availability zone is not available");
    }
    if (!c.force_host.empty()) {
      std::string_view name = scheduler::forced_host_name(c.force_host);
      bool known = std::any_of(hosts.begin(), hosts.end(),
                               [&](const scheduler::HostState& h) { return h.name == name; });
      if (!known) return bad("Compute host " + std::string(name) + " could not be found.");
    }

    std::vector<std::string> placed;
    std::string why;
    auto placement = scheduler::place(hosts, req, scheduler_options(ctx.options));
    if (placement) {
      if (static_cast<int64_t>(placement->hosts.size()) >= c.min_count) {
        placed = placement->hosts;
      } else if (placement->shortfall) {
        why = placement->shortfall->reason;
      }
    } else if (placement.error().code() == Code::kResourceExhausted) {
      why = placement.error().message();
    } else {
      return fail(Code::kInternal, "scheduler: " + placement.error().to_string());
    }
    // Nothing fits: Nova still creates the servers (all of them the quota allows) and puts them
    // in ERROR with a fault; the API answers 202.
    const int64_t count = placed.empty() ? allowed : static_cast<int64_t>(placed.size());
    const std::string fault = placed.empty() ? [&] {
      Json f = parse_json(make_fault_json(500, kNoValidHost, now)).value_or(Json::object());
      if (!why.empty()) f["details"] = why;
      return dump_json(f);
    }() : std::string();

    std::map<std::string, std::string> zone_of;
    for (const scheduler::HostState& h : hosts) zone_of[h.name] = h.availability_zone;
    const std::string stamp = stored_time(now);
    for (int64_t i = 0; i < count; ++i) {
      ServerRow r;
      r.id = new_uuid();
      r.project_id = project;
      r.user_id = call.caller.user_id;
      r.name = count > 1 ? c.name + "-" + std::to_string(i + 1) : c.name;
      r.description = c.description;
      r.image_id = image->id;
      r.flavor_id = fl.id;
      r.flavor_json = to_json(fl);
      r.vcpus = fl.vcpus;
      r.ram_mb = fl.ram_mb;
      r.disk_gb = fl.disk_gb;
      r.key_name = c.key_name;
      r.key_data = key_data;
      r.user_data = c.user_data;
      r.access_ipv4 = c.access_ipv4;
      r.access_ipv6 = c.access_ipv6;
      r.config_drive = c.config_drive;
      r.hostname = sanitize_hostname(r.name);
      if (r.hostname.empty()) r.hostname = "Server-" + r.id;
      r.reservation_id = resv;
      r.launch_index = i;
      r.server_group_id = c.group_id;
      r.disk_config = c.disk_config;
      r.network = c.network;
      r.driver = driver;
      r.desired_power = "running";
      r.created_at = stamp;
      r.updated_at = stamp;
      r.created_ms = now;
      if (placed.empty()) {
        r.vm_state = std::string(vm::kError);
        r.fault_json = fault;
        if (!c.az.empty()) r.availability_zone = c.az;
      } else {
        r.vm_state = std::string(vm::kBuilding);
        r.task_state = std::string(task::kSpawning);
        r.host = placed[static_cast<size_t>(i)];
        r.availability_zone = zone_of[*r.host];
        r.op_deadline_ms = now + static_cast<int64_t>(ctx.options.build_timeout.count());
      }
      CONCORD_RETURN_IF_ERROR(insert_server(tx, r));
      if (r.host) CONCORD_RETURN_IF_ERROR(claim(tx, r.id, "instance", *r.host, req.per_instance));
      if (c.group_id) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n, tx.exec("INSERT INTO compute_server_group_members (group_id, server_id) "
                               "VALUES (?, ?)",
                               {*c.group_id, r.id}));
        (void)n;
      }
      CONCORD_RETURN_IF_ERROR(servers::replace_metadata(tx, r.id, c.metadata));
      for (const std::string& tag : c.tags) {
        CONCORD_ASSIGN_OR_RETURN(
            int64_t n,
            tx.exec("INSERT INTO compute_server_tags (server_id, tag) VALUES (?, ?)", {r.id, tag}));
        (void)n;
      }
      if (placed.empty()) {
        CONCORD_RETURN_IF_ERROR(servers::record_action(
            tx, call, r, "create", "conductor_schedule_and_build_instances", now, "Error"));
      } else {
        CONCORD_RETURN_IF_ERROR(servers::record_action(tx, call, r, "create",
                                                       "compute__do_build_and_run_instance", now));
      }
      ids.push_back(r.id);
    }
    return ok();
  });
  CONCORD_RETURN_IF_ERROR(s);

  if (c.return_reservation_id) {
    return http::Response::json(202, dump_json({{"reservation_id", resv}}));
  }
  Json out = {{"server",
               {{"id", ids.front()},
                {"links", servers::server_links(call, ids.front())},
                {"OS-DCF:diskConfig", c.disk_config},
                {"security_groups", Json::array({{{"name", "default"}}})},
                {"adminPass", c.admin_pass}}}};
  http::Response resp = http::Response::json(202, dump_json(out));
  resp.set_header("location", call.link("servers/" + ids.front()));
  return resp;
}

// ---------------------------------------------------------------------------------------------
// List

// Nova's status -> (vm_states, task_states); "default" among the task states means the status
// is the vm_state's default and no task filter applies (so ACTIVE includes rebooting servers).
bool status_filter(std::string status, std::set<std::string>& vms, std::set<std::string>& tasks) {
  for (char& c : status) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto add = [&](std::initializer_list<std::string_view> v,
                 std::initializer_list<std::string_view> t) {
    for (auto x : v) vms.emplace(x);
    for (auto x : t) tasks.emplace(x);
  };
  if (status == "ACTIVE")
    add({"active"}, {"default"});
  else if (status == "BUILD")
    add({"building"}, {"default"});
  else if (status == "SHUTOFF")
    add({"stopped"}, {"default"});
  else if (status == "VERIFY_RESIZE")
    add({"resized"}, {"default"});
  else if (status == "PAUSED")
    add({"paused"}, {"default"});
  else if (status == "SUSPENDED")
    add({"suspended"}, {"default"});
  else if (status == "RESCUE")
    add({"rescued"}, {"default"});
  else if (status == "ERROR")
    add({"error"}, {"default"});
  else if (status == "DELETED")
    add({"deleted"}, {"default"});
  else if (status == "SOFT_DELETED")
    add({"soft-delete"}, {"default"});
  else if (status == "SHELVED")
    add({"shelved"}, {"default"});
  else if (status == "SHELVED_OFFLOADED")
    add({"shelved_offloaded"}, {"default"});
  else if (status == "REBOOT")
    add({"active"}, {"rebooting", "reboot_pending", "reboot_started"});
  else if (status == "HARD_REBOOT")
    add({"active"}, {"rebooting_hard", "reboot_pending_hard", "reboot_started_hard"});
  else if (status == "PASSWORD")
    add({"active"}, {"updating_password"});
  else if (status == "REBUILD")
    add({"active", "stopped", "error"},
        {"rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"});
  else if (status == "MIGRATING")
    add({"active", "paused"}, {"migrating"});
  else if (status == "RESIZE")
    add({"active", "stopped"},
        {"resize_prep", "resize_migrating", "resize_migrated", "resize_finish"});
  else if (status == "REVERT_RESIZE")
    add({"resized"}, {"resize_reverting"});
  else
    return false;
  return true;
}

struct SortKey {
  std::string expr;  // SQL expression (column, COALESCE'd when nullable)
  bool desc = true;
};

std::optional<std::string> sort_expr(std::string_view key) {
  static const std::map<std::string, std::string, std::less<>> kMap = {
      {"access_ip_v4", "access_ipv4"},
      {"access_ip_v6", "access_ipv6"},
      {"auto_disk_config", "disk_config"},
      {"availability_zone", "COALESCE(availability_zone, '')"},
      {"config_drive", "config_drive"},
      {"created_at", "created_ms"},
      {"display_description", "COALESCE(description, '')"},
      {"display_name", "name"},
      {"host", "COALESCE(host, '')"},
      {"hostname", "hostname"},
      {"image_ref", "image_id"},
      {"instance_type_id", "flavor_id"},
      {"kernel_id", "id"},
      {"key_name", "COALESCE(key_name, '')"},
      {"launch_index", "launch_index"},
      {"launched_at", "COALESCE(launched_at, '')"},
      {"locked", "locked"},
      {"locked_by", "locked"},
      {"node", "COALESCE(host, '')"},
      {"power_state", "power_state"},
      {"progress", "id"},
      {"project_id", "project_id"},
      {"ramdisk_id", "id"},
      {"root_device_name", "id"},
      {"task_state", "COALESCE(task_state, '')"},
      {"terminated_at", "COALESCE(terminated_at, '')"},
      {"updated_at", "updated_at"},
      {"user_id", "user_id"},
      {"uuid", "id"},
      {"vm_state", "vm_state"},
  };
  auto it = kMap.find(key);
  if (it == kMap.end()) return std::nullopt;
  return it->second;
}

// Keys Nova accepts and ignores (they exist only in its database).
bool ignored_sort_key(std::string_view key) {
  static const std::set<std::string, std::less<>> kIgnored = {"architecture",
                                                              "cell_name",
                                                              "cleaned",
                                                              "default_ephemeral_device",
                                                              "default_swap_device",
                                                              "deleted",
                                                              "deleted_at",
                                                              "disable_terminate",
                                                              "ephemeral_gb",
                                                              "ephemeral_key_uuid",
                                                              "id",
                                                              "key_data",
                                                              "launched_on",
                                                              "locked",
                                                              "memory_mb",
                                                              "os_type",
                                                              "reservation_id",
                                                              "root_gb",
                                                              "shutdown_terminate",
                                                              "user_data",
                                                              "vcpus",
                                                              "vm_mode"};
  return kIgnored.contains(key);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    std::string item =
        s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

constexpr int64_t kMaxLimit = 1000;

// The detail views of a page of servers, in page order: from the view cache where it holds the
// server's current revision, else rendered from the row (read in the same transaction as the
// page) and cached. Each text is open: close_server_view() finishes it.
Result<std::vector<ServerViewCache::Text>> render_page(
    NovaApi& api, const Call& call, store::Tx& tx, const std::vector<ServerViewCache::Key>& page,
    const std::string& variant, int64_t now) {
  ServerViewCache& cache = api.view_cache();
  std::vector<ServerViewCache::Text> texts = cache.get(page, variant);
  std::vector<size_t> misses;
  for (size_t i = 0; i < page.size(); ++i) {
    if (!texts[i]) misses.push_back(i);
  }
  constexpr size_t kChunk = 500;  // bound on bound parameters per statement
  servers::ViewCache flavors;
  for (size_t start = 0; start < misses.size(); start += kChunk) {
    const size_t end = std::min(misses.size(), start + kChunk);
    std::vector<store::Value> ids;
    std::map<std::string, size_t> slot;
    for (size_t k = start; k < end; ++k) {
      ids.push_back(page[misses[k]].id);
      slot.emplace(page[misses[k]].id, misses[k]);
    }
    std::string in;
    for (size_t k = 0; k < ids.size(); ++k) in += k ? ", ?" : "?";
    CONCORD_ASSIGN_OR_RETURN(store::Rows found,
                             tx.query(std::string("SELECT ") + kServerColumns +
                                          " FROM compute_servers WHERE id IN (" + in + ")",
                                      ids));
    std::vector<ServerRow> rows;
    rows.reserve(found.size());
    for (const store::Row& r : found) rows.push_back(server_from_row(r));
    servers::ExtrasWanted wanted;
    wanted.tags = call.version.at_least(26);
    CONCORD_ASSIGN_OR_RETURN(auto extras, servers::load_extras(tx, rows, wanted, now, 0));
    std::vector<ServerViewCache::Key> keys;
    std::vector<ServerViewCache::Text> rendered;
    for (const ServerRow& row : rows) {
      auto text = std::make_shared<std::string>();
      text->reserve(2048);
      servers::append_server_view_open(*text, call, row, extras[row.id], servers::ViewKind::kDetail,
                                       &flavors);
      texts[slot.at(row.id)] = text;
      keys.push_back({row.id, row.revision});
      rendered.push_back(std::move(text));
    }
    cache.put(keys, variant, rendered);
  }
  for (size_t i = 0; i < page.size(); ++i) {
    // Listed by the page query, read again in the same transaction: it cannot be missing.
    if (!texts[i]) return fail(Code::kInternal, "server " + page[i].id + " vanished mid-read");
  }
  return texts;
}

Result<http::Response> list_servers(NovaApi& api, Call& call, bool detail) {
  ComputeContext& ctx = api.ctx();
  const ApiVersion& v = call.version;
  const bool admin = call.caller.is_admin();
  const auto params = call.req.query_params();
  std::multimap<std::string, std::string> q(params.begin(), params.end());
  auto first = [&](const std::string& k) -> std::optional<std::string> {
    auto it = q.find(k);
    if (it == q.end()) return std::nullopt;
    return it->second;
  };
  auto all = [&](const std::string& k) {
    std::vector<std::string> out;
    auto [b, e] = q.equal_range(k);
    for (auto it = b; it != e; ++it) out.push_back(it->second);
    return out;
  };

  std::vector<std::string> where;
  std::vector<store::Value> args;

  bool all_tenants = false;
  if (auto at = first("all_tenants")) {
    if (at->empty()) {
      all_tenants = true;
    } else {
      CONCORD_ASSIGN_OR_RETURN(all_tenants, query_bool(*at, "all_tenants"));
    }
  }
  if (all_tenants && !admin) {
    return fail(Code::kPermissionDenied,
                std::string("Policy doesn't allow os_compute_api:servers:") +
                    (detail ? "detail" : "index") + ":get_all_tenants to be performed.");
  }
  if (!all_tenants) {
    where.push_back("project_id = ?");
    args.push_back(call.caller.project_id);
  } else {
    auto p = first("project_id");
    if (!p) p = first("tenant_id");
    if (p) {
      where.push_back("project_id = ?");
      args.push_back(*p);
    }
  }

  bool deleted_only = false;
  if (admin) {
    if (auto d = first("deleted")) {
      CONCORD_ASSIGN_OR_RETURN(deleted_only, query_bool(*d, "deleted"));
    }
  }
  auto changes_since = first("changes-since");
  auto changes_before = v.at_least(66) ? first("changes-before") : std::nullopt;
  std::optional<SystemTime> since_t, before_t;
  if (changes_since) {
    since_t = parse_iso_time(*changes_since);
    if (!since_t)
      return bad("Invalid input for query parameters changes-since. Value: " +
                 sanitize_utf8(*changes_since) + ". is not a 'date-time'");
    where.push_back("updated_at >= ?");
    args.push_back(stored_time(
        std::chrono::duration_cast<std::chrono::milliseconds>(since_t->time_since_epoch())
            .count()));
  }
  if (changes_before) {
    before_t = parse_iso_time(*changes_before);
    if (!before_t)
      return bad("Invalid input for query parameters changes-before. Value: " +
                 sanitize_utf8(*changes_before) + ". is not a 'date-time'");
    where.push_back("updated_at <= ?");
    args.push_back(stored_time(
        std::chrono::duration_cast<std::chrono::milliseconds>(before_t->time_since_epoch())
            .count() +
        999));
  }
  if (since_t && before_t && *since_t > *before_t)
    return bad("The value of changes-since must be less than or equal to changes-before.");
  if (deleted_only) {
    where.push_back("deleted = 1");
  } else if (!changes_since && !changes_before) {
    // Deleted servers (and those being deleted) are gone for the API; Nova lists them only
    // for changes-since / changes-before.
    where.push_back("deleted = 0 AND (task_state IS NULL OR task_state <> 'deleting')");
  }

  std::vector<std::string> statuses = all("status");
  if (!statuses.empty()) {
    std::set<std::string> vms, tasks;
    bool any_known = false;
    for (const std::string& st : statuses) {
      if (status_filter(st, vms, tasks)) {
        any_known = true;
      } else if (v.at_least(38)) {
        return bad("Invalid status value");
      }
    }
    if (!any_known) {
      Json out = {{"servers", Json::array()}};
      return http::Response::json(200, dump_json(out));
    }
    std::string in;
    for (const std::string& s : vms) {
      in += in.empty() ? "?" : ", ?";
      args.push_back(s);
    }
    where.push_back("vm_state IN (" + in + ")");
    if (!tasks.contains("default")) {
      std::string tin;
      for (const std::string& t : tasks) {
        tin += tin.empty() ? "?" : ", ?";
        args.push_back(t);
      }
      where.push_back("task_state IN (" + tin + ")");
    }
  }
  auto eq = [&](const char* column, const std::string& value) {
    where.push_back(std::string(column) + " = ?");
    args.push_back(value);
  };
  if (auto i = first("image")) eq("image_id", servers::ref_id(*i));
  if (auto f = first("flavor")) eq("flavor_id", servers::ref_id(*f));
  if (auto r = first("reservation_id")) eq("reservation_id", *r);
  if (admin) {
    if (auto h = first("host")) eq("host", *h);
    if (auto h = first("node")) eq("host", *h);
    if (auto u = first("user_id")) eq("user_id", *u);
    if (auto u = first("uuid")) eq("id", *u);
    if (auto k = first("key_name")) eq("key_name", *k);
    if (auto a = first("availability_zone")) eq("availability_zone", *a);
  }
  if (v.at_least(73)) {
    if (auto l = first("locked")) {
      CONCORD_ASSIGN_OR_RETURN(bool locked, query_bool(*l, "locked"));
      where.push_back(locked ? "locked = 1" : "locked = 0");
    }
  }
  if (v.at_least(26)) {
    auto tag_clause = [&](const std::string& key, bool every, bool negate) -> Status {
      auto value = first(key);
      if (!value) return ok();
      std::vector<std::string> tags = split_commas(*value);
      if (tags.empty()) return ok();
      std::string in;
      for (const std::string& t : tags) {
        in += in.empty() ? "?" : ", ?";
        args.push_back(t);
      }
      std::string sub = "SELECT server_id FROM compute_server_tags WHERE tag IN (" + in + ")";
      if (every) {
        sub += " GROUP BY server_id HAVING COUNT(DISTINCT tag) = ?";
        args.push_back(
            static_cast<int64_t>(std::set<std::string>(tags.begin(), tags.end()).size()));
      }
      where.push_back(std::string("id ") + (negate ? "NOT IN (" : "IN (") + sub + ")");
      return ok();
    };
    CONCORD_RETURN_IF_ERROR(tag_clause("tags", true, false));
    CONCORD_RETURN_IF_ERROR(tag_clause("tags-any", false, false));
    CONCORD_RETURN_IF_ERROR(tag_clause("not-tags", true, true));
    CONCORD_RETURN_IF_ERROR(tag_clause("not-tags-any", false, true));
  }

  std::optional<servers::NameMatcher> name_re, ip_re, ip6_re;
  if (auto n = first("name")) {
    auto m = servers::NameMatcher::compile(*n);
    if (!m) return bad("Invalid name filter: " + m.error().message());
    name_re = std::move(*m);
  }
  if (auto n = first("ip")) {
    auto m = servers::NameMatcher::compile(*n);
    if (!m) return bad("Invalid ip filter: " + m.error().message());
    ip_re = std::move(*m);
  }
  if (auto n = first("ip6")) {
    auto m = servers::NameMatcher::compile(*n);
    if (!m) return bad("Invalid ip6 filter: " + m.error().message());
    ip6_re = std::move(*m);
  }

  // Sorting: sort_key/sort_dir pairs; default created_at desc; id breaks ties.
  std::vector<SortKey> sort;
  std::vector<std::string> keys = all("sort_key"), dirs = all("sort_dir");
  for (size_t i = 0; i < keys.size(); ++i) {
    std::string dir = i < dirs.size() ? dirs[i] : "desc";
    if (dir != "asc" && dir != "desc")
      return bad("Invalid input for query parameters sort_dir. Value: " + sanitize_utf8(dir) +
                 ". 'asc' or 'desc' expected");
    if (ignored_sort_key(keys[i])) continue;
    auto expr = sort_expr(keys[i]);
    if (!expr)
      return bad("Invalid input for query parameters sort_key. Value: " + sanitize_utf8(keys[i]) +
                 ". is not a valid sort key");
    if ((keys[i] == "host" || keys[i] == "node") && !admin) {
      return fail(Code::kPermissionDenied, "Only administrators can sort servers by " + keys[i]);
    }
    sort.push_back({*expr, dir == "desc"});
  }
  for (size_t i = keys.size(); i < dirs.size(); ++i) {
    if (dirs[i] != "asc" && dirs[i] != "desc")
      return bad("Invalid input for query parameters sort_dir. Value: " + sanitize_utf8(dirs[i]) +
                 ". 'asc' or 'desc' expected");
  }
  if (sort.empty()) sort.push_back({"created_ms", true});
  const bool last_desc = sort.back().desc;
  if (sort.back().expr != "id") sort.push_back({"id", last_desc});

  int64_t limit = kMaxLimit;
  if (auto l = first("limit")) {
    const std::string& t = *l;
    if (t.empty() || t.size() > 18 || !std::all_of(t.begin(), t.end(), [](char ch) {
          return std::isdigit(static_cast<unsigned char>(ch)) != 0 || ch == '-';
        }))
      return bad("limit param must be an integer");
    int64_t n = 0;
    try {
      n = std::stoll(t);
    } catch (const std::exception&) {
      return bad("limit param must be an integer");
    }
    if (n < 0) return bad("limit param must be positive");
    limit = std::min(n, kMaxLimit);  // 0 lists nothing, as Nova (Tempest checks it)
  }
  const bool cxx_filter = name_re || ip_re || ip6_re;

  // The detail page without C++-side filters reads only (id, revision, host) for the page and
  // renders just the servers whose revision it has not rendered before (view_cache.h).
  const bool cached_path = detail && !cxx_filter;
  const std::string variant =
      std::to_string(v.minor) + (admin ? "|admin|" : "|user|") + call.req.base_url;
  std::vector<ServerViewCache::Key> page;
  std::vector<ServerViewCache::Text> texts;
  std::vector<std::optional<std::string>> page_hosts;
  std::map<std::string, std::string> host_status;

  std::string select = cached_path
                           ? std::string("SELECT id, revision, host FROM compute_servers")
                           : std::string("SELECT ") + kServerColumns + " FROM compute_servers";
  std::vector<ServerRow> rows;
  const int64_t now = now_ms(ctx.clock);
  const auto down_after = static_cast<int64_t>(ctx.options.down_after.count());
  std::map<std::string, servers::ServerExtras> extras;
  Status st = ctx.store.read([&](store::Tx& tx) -> Status {
    rows.clear();
    page.clear();
    page_hosts.clear();
    std::vector<std::string> w = where;
    std::vector<store::Value> a = args;
    if (auto marker = first("marker")) {
      std::string cols;
      for (const SortKey& k : sort) cols += (cols.empty() ? "" : ", ") + k.expr;
      std::string msql = "SELECT " + cols + " FROM compute_servers WHERE id = ?";
      std::vector<store::Value> margs = {*marker};
      if (!all_tenants) {
        msql += " AND project_id = ?";
        margs.push_back(call.caller.project_id);
      }
      CONCORD_ASSIGN_OR_RETURN(store::Rows m, tx.query(msql, margs));
      if (m.empty()) return bad("marker [" + sanitize_utf8(*marker) + "] not found");
      // Keyset: rows strictly after the marker in the sort order.
      std::string any;
      for (size_t i = 0; i < sort.size(); ++i) {
        std::string term;
        for (size_t j = 0; j < i; ++j) {
          term += sort[j].expr + " = ? AND ";
          a.push_back(m[0].value(j));
        }
        term += sort[i].expr + (sort[i].desc ? " < ?" : " > ?");
        a.push_back(m[0].value(i));
        any += (any.empty() ? "(" : " OR (") + term + ")";
      }
      w.push_back("(" + any + ")");
      // Implied by the terms above, but a plain range the store can walk an index with (the
      // OR alone made a page in the middle cost twice the first one).
      w.push_back(sort[0].expr + (sort[0].desc ? " <= ?" : " >= ?"));
      a.push_back(m[0].value(0));
    }
    std::string sql = select;
    for (size_t i = 0; i < w.size(); ++i) sql += (i ? " AND " : " WHERE ") + w[i];
    sql += " ORDER BY ";
    for (size_t i = 0; i < sort.size(); ++i)
      sql += (i ? ", " : "") + sort[i].expr + (sort[i].desc ? " DESC" : " ASC");
    if (!cxx_filter) {
      sql += " LIMIT ?";
      a.push_back(limit);
    }
    CONCORD_ASSIGN_OR_RETURN(store::Rows found, tx.query(sql, a));
    if (cached_path) {
      for (const store::Row& r : found) {
        page.push_back({r.text(0), r.integer(1)});
        page_hosts.push_back(r.is_null(2) ? std::nullopt : std::optional(r.text(2)));
      }
      CONCORD_ASSIGN_OR_RETURN(texts, render_page(api, call, tx, page, variant, now));
      if (servers::view_has_host_status(call, servers::ViewKind::kDetail)) {
        std::set<std::string> hosts;
        for (const auto& h : page_hosts) {
          if (h) hosts.insert(*h);
        }
        CONCORD_ASSIGN_OR_RETURN(host_status, servers::host_statuses(tx, hosts, now, down_after));
      }
      return ok();
    }
    rows.reserve(std::min<size_t>(found.size(), static_cast<size_t>(limit)));
    for (const store::Row& r : found) {
      if (static_cast<int64_t>(rows.size()) >= limit) break;
      ServerRow s = server_from_row(r);
      if (name_re && !name_re->search(s.name)) continue;
      if (ip_re || ip6_re) {
        bool hit = false;
        auto parsed = parse_json(s.addresses_json);
        if (parsed && parsed->is_object()) {
          for (auto& [net, list] : parsed->items()) {
            (void)net;
            if (!list.is_array()) continue;
            for (const Json& addr : list) {
              if (!addr.is_object()) continue;
              int version = addr.value("version", 4);
              std::string text = addr.value("addr", "");
              if (version == 4 && ip_re && ip_re->search(text)) hit = true;
              if (version == 6 && ip6_re && ip6_re->search(text)) hit = true;
            }
          }
        }
        if (!hit) continue;
      }
      rows.push_back(std::move(s));
      if (static_cast<int64_t>(rows.size()) >= limit) break;
    }
    if (detail) {
      servers::ExtrasWanted wanted;
      wanted.tags = v.at_least(26);
      wanted.host_status = v.at_least(16) && admin;
      CONCORD_ASSIGN_OR_RETURN(extras, servers::load_extras(tx, rows, wanted, now, down_after));
    }
    return ok();
  });
  CONCORD_RETURN_IF_ERROR(st);

  std::string text = "{\"servers\":[";
  text.reserve(std::max(rows.size(), page.size()) * (detail ? 1800 : 300));
  for (size_t i = 0; i < page.size(); ++i) {
    if (i) text += ',';
    text += *texts[i];
    servers::close_server_view(text, call, servers::ViewKind::kDetail,
                               page_hosts[i] ? host_status[*page_hosts[i]] : std::string());
  }
  servers::ViewCache cache;
  for (size_t i = 0; i < rows.size(); ++i) {
    const ServerRow& s = rows[i];
    if (i) text += ',';
    if (detail) {
      servers::append_server_view(text, call, s, extras[s.id], servers::ViewKind::kDetail, &cache);
    } else {
      text +=
          dump_json({{"id", s.id}, {"links", servers::server_links(call, s.id)}, {"name", s.name}});
    }
  }
  text += ']';
  const size_t listed = cached_path ? page.size() : rows.size();
  if (static_cast<int64_t>(listed) == limit && listed > 0) {
    std::string query;
    for (const auto& [k, val] : params) {
      if (k == "marker") continue;
      query += (query.empty() ? "" : "&") + url_encode(k) + "=" + url_encode(val);
    }
    const std::string& last = cached_path ? page.back().id : rows.back().id;
    query += (query.empty() ? "" : "&") + std::string("marker=") + url_encode(last);
    Json links =
        Json::array({{{"rel", "next"},
                      {"href", call.link(detail ? "servers/detail" : "servers") + "?" + query}}});
    text += ",\"servers_links\":" + dump_json(links);
  }
  text += '}';
  return http::Response::json(200, std::move(text));
}

// ---------------------------------------------------------------------------------------------
// Show, update, delete

Result<http::Response> show_server(NovaApi& api, Call& call) {
  ComputeContext& ctx = api.ctx();
  ServerRow row;
  servers::ServerExtras extras;
  const int64_t now = now_ms(ctx.clock);
  CONCORD_RETURN_IF_ERROR(ctx.store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(row,
                             servers::load_visible(tx, api, call, call.param(0), "project_reader"));
    CONCORD_ASSIGN_OR_RETURN(
        extras, servers::load_one_extras(tx, call, row, now,
                                         static_cast<int64_t>(ctx.options.down_after.count())));
    return ok();
  }));
  Json out = {{"server", servers::server_view(call, row, extras, servers::ViewKind::kShow)}};
  return http::Response::json(200, dump_json(out));
}

Result<http::Response> update_server_api(NovaApi& api, Call& call) {
  ComputeContext& ctx = api.ctx();
  const ApiVersion& v = call.version;
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto it = body.find("server");
  if (it == body.end() || !it->is_object() || body.size() != 1)
    return bad("Invalid input for field/attribute server. 'server' is a required property");
  const Json& s = *it;
  for (auto& [k, val] : s.items()) {
    (void)val;
    bool known = k == "name" || k == "accessIPv4" || k == "accessIPv6" ||
                 k == "OS-DCF:diskConfig" || (k == "description" && v.at_least(19));
    if (!known)
      return bad(
          "Invalid input for field/attribute server. Additional properties are not "
          "allowed ('" +
          sanitize_utf8(k) + "' was unexpected)");
  }
  if (auto n = s.find("name"); n != s.end())
    CONCORD_RETURN_IF_ERROR(servers::check_name(*n, "name"));
  std::optional<std::string> ip4, ip6;
  if (auto a = s.find("accessIPv4"); a != s.end()) {
    if (a->is_null())
      ip4 = "";
    else {
      CONCORD_ASSIGN_OR_RETURN(ip4, servers::canonical_ip(*a, false, "accessIPv4"));
    }
  }
  if (auto a = s.find("accessIPv6"); a != s.end()) {
    if (a->is_null())
      ip6 = "";
    else {
      CONCORD_ASSIGN_OR_RETURN(ip6, servers::canonical_ip(*a, true, "accessIPv6"));
    }
  }
  if (auto d = s.find("OS-DCF:diskConfig"); d != s.end()) {
    if (!d->is_string() || (*d != "AUTO" && *d != "MANUAL"))
      return bad(bad_field("OS-DCF:diskConfig", *d, "is not one of ['AUTO', 'MANUAL']"));
  }
  if (auto d = s.find("description"); d != s.end() && !d->is_null()) {
    if (!d->is_string()) return bad(bad_field("description", *d, "is not of type 'string'"));
    size_t chars = 0;
    for (unsigned char ch : d->get_ref<const std::string&>()) chars += (ch & 0xC0) != 0x80;
    if (chars > 255) return bad(bad_field("description", *d, "is too long"));
  }

  ServerRow row;
  servers::ServerExtras extras;
  CONCORD_RETURN_IF_ERROR(servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(row,
                             servers::load_visible(tx, api, call, call.param(0), "project_member"));
    if (auto n = s.find("name"); n != s.end()) row.name = n->get<std::string>();
    if (ip4) row.access_ipv4 = *ip4;
    if (ip6) row.access_ipv6 = *ip6;
    if (auto d = s.find("OS-DCF:diskConfig"); d != s.end()) row.disk_config = d->get<std::string>();
    if (auto d = s.find("description"); d != s.end()) {
      row.description =
          d->is_null() ? std::nullopt : std::optional<std::string>(d->get<std::string>());
    }
    row.updated_at = stored_time(now);
    CONCORD_RETURN_IF_ERROR(update_server(tx, row));
    CONCORD_ASSIGN_OR_RETURN(
        extras, servers::load_one_extras(tx, call, row, now,
                                         static_cast<int64_t>(ctx.options.down_after.count())));
    return ok();
  }));
  Json out = {{"server", servers::server_view(call, row, extras, servers::ViewKind::kUpdate)}};
  return http::Response::json(200, dump_json(out));
}

Result<http::Response> delete_server_api(NovaApi& api, Call& call) {
  ComputeContext& ctx = api.ctx();
  CONCORD_RETURN_IF_ERROR(servers::write_retrying(ctx.store, [&](store::Tx& tx) -> Status {
    const int64_t now = now_ms(ctx.clock);
    CONCORD_ASSIGN_OR_RETURN(ServerRow row,
                             servers::load_visible(tx, api, call, call.param(0), "project_member"));
    CONCORD_RETURN_IF_ERROR(servers::check_not_locked(call, row));
    CONCORD_ASSIGN_OR_RETURN(bool local, servers::delete_server_row(tx, ctx, row, now));
    // A local delete is finished here; otherwise the agent's report completes the action.
    if (local) {
      return servers::record_action(tx, call, row, "delete", "compute_terminate_instance", now,
                                    "Success");
    }
    return servers::record_action(tx, call, row, "delete", "compute_terminate_instance", now);
  }));
  return http::Response::empty(204);
}

}  // namespace

void add_server_routes(NovaApi& api) {
  using http::Method;
  NovaApi* a = &api;
  api.add(Method::kPost, "/v2.1/servers", "project_member",
          [a](Call& c) { return create_server(*a, c); });
  api.add(Method::kGet, "/v2.1/servers", "project_reader",
          [a](Call& c) { return list_servers(*a, c, false); });
  api.add(Method::kGet, "/v2.1/servers/detail", "project_reader",
          [a](Call& c) { return list_servers(*a, c, true); });
  api.add(Method::kGet, "/v2.1/servers/{server_id}", "project_reader",
          [a](Call& c) { return show_server(*a, c); });
  api.add(Method::kPut, "/v2.1/servers/{server_id}", "project_member",
          [a](Call& c) { return update_server_api(*a, c); });
  api.add(Method::kDelete, "/v2.1/servers/{server_id}", "project_member",
          [a](Call& c) { return delete_server_api(*a, c); });
  servers::add_server_action_routes(api);
  servers::add_server_extra_routes(api);
}

}  // namespace concord::compute
