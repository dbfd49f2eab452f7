#include "config/config.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace concord::config {
namespace {

using namespace std::string_literals;

constexpr int64_t kDay = 24LL * 3600 * 1000;

const Option* find_option(std::string_view name) {
  for (const auto& o : options()) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

Result<int64_t> parse_int(std::string_view text) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return fail(Code::kInvalidArgument, "not an integer: '" + std::string(text) + "'");
  }
  return v;
}

Result<bool> parse_bool(std::string_view text) {
  if (text == "true" || text == "yes" || text == "on" || text == "1") return true;
  if (text == "false" || text == "no" || text == "off" || text == "0") return false;
  return fail(Code::kInvalidArgument, "not a boolean (true/false): '" + std::string(text) + "'");
}

std::string type_name(Type t) {
  switch (t) {
    case Type::kString: return "string";
    case Type::kInt: return "integer";
    case Type::kBool: return "boolean";
    case Type::kDuration: return "duration";
  }
  return "?";
}

Status validate(const Option& o, std::string_view value) {
  auto bad = [&](const std::string& why) {
    return fail(Code::kInvalidArgument, "option " + o.name + ": " + why);
  };
  switch (o.type) {
    case Type::kString:
      if (!o.choices.empty() &&
          std::find(o.choices.begin(), o.choices.end(), value) == o.choices.end()) {
        std::string list;
        for (const auto& c : o.choices) list += (list.empty() ? "" : ", ") + c;
        return bad("'" + std::string(value) + "' is not one of: " + list);
      }
      return ok();
    case Type::kBool: {
      auto b = parse_bool(value);
      if (!b) return bad(b.error().message());
      return ok();
    }
    case Type::kInt: {
      auto v = parse_int(value);
      if (!v) return bad(v.error().message());
      if (*v < o.min || *v > o.max) {
        return bad(std::to_string(*v) + " is outside [" + std::to_string(o.min) + ", " +
                   std::to_string(o.max) + "]");
      }
      return ok();
    }
    case Type::kDuration: {
      auto v = parse_duration_ms(value);
      if (!v) return bad(v.error().message());
      if (*v < o.min || *v > o.max) {
        return bad(std::string(value) + " is outside [" + std::to_string(o.min) + "ms, " +
                   std::to_string(o.max) + "ms]");
      }
      return ok();
    }
  }
  return ok();
}

}  // namespace

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"server.bind", Type::kString, "127.0.0.1", "Address the API listens on."},
      {"server.port", Type::kInt, "5000", "TCP port of the API (0 picks a free port).", 0, 65535},
      {"server.public_url", Type::kString, "",
       "Base URL published in the catalog and version documents; empty derives "
       "http://<bind>:<port>."},
      {"server.threads", Type::kInt, "8",
       "I/O threads. Handlers run on them and may block briefly on the store; half may hold "
       "agents' long-polls.",
       1, 256},
      {"server.max_body_bytes", Type::kInt, "1048576",
       "Largest request body accepted (413 beyond).", 1024, 1LL << 34},
      {"server.max_header_bytes", Type::kInt, "16384",
       "Largest request head accepted (431/413 beyond).", 1024, 1 << 20},
      {"server.header_timeout", Type::kDuration, "10s", "Time allowed to receive a request head.",
       100, kDay},
      {"server.body_timeout", Type::kDuration, "30s", "Time allowed to receive a request body.",
       100, kDay},
      {"server.idle_timeout", Type::kDuration, "60s", "Keep-alive idle time before closing.", 100,
       kDay},
      {"server.shutdown_grace", Type::kDuration, "5s",
       "How long in-flight requests may run after a stop signal.", 0, 600'000},
      {"store.url", Type::kString, "",
       "State store: sqlite:///path/concord.db or postgresql://...; empty: "
       "sqlite under data_dir."},
      {"store.connections", Type::kInt, "4", "Store connections (readers for SQLite).", 1, 256},
      {"data_dir", Type::kString, "./data",
       "Folder for the SQLite store, token keys and credentials files."},
      {"log.level",
       Type::kString,
       "info",
       "Log level.",
       0,
       0,
       false,
       {"trace", "debug", "info", "warn", "error", "off"}},
      {"identity.region", Type::kString, "RegionOne", "Region id of this deployment."},
      {"identity.token_ttl", Type::kDuration, "1h", "Lifetime of issued tokens.", 1'000, 7 * kDay},
      {"identity.max_active_keys", Type::kInt, "3",
       "Fernet keys kept (staged + primary + secondary); rotation drops the oldest beyond it.", 2,
       100},
      {"identity.lockout_failures", Type::kInt, "6",
       "Failed password logins of one user within lockout_window before further attempts are "
       "refused.",
       1, 1000},
      {"identity.lockout_window", Type::kDuration, "5m",
       "Window for counting failed logins, and how long the refusal lasts.", 1000, kDay},
      {"image.max_image_bytes", Type::kInt, "10737418240",
       "Largest image upload accepted (413 beyond).", 1024, 1LL << 42},
      {"compute.availability_zone", Type::kString, "nova",
       "Default availability zone of hosts and servers."},
      {"compute.cpu_allocation_ratio", Type::kString, "16.0",
       "Virtual CPUs the scheduler may place per physical CPU."},
      {"compute.ram_allocation_ratio", Type::kString, "1.5",
       "RAM the scheduler may place per unit of physical RAM."},
      {"compute.disk_allocation_ratio", Type::kString, "1.0",
       "Disk the scheduler may place per unit of physical disk."},
      {"compute.weigher",
       Type::kString,
       "spread",
       "Host weighing: spread (most free first, Nova's default) or pack (fewest hosts).",
       0,
       0,
       false,
       {"spread", "pack"}},
      {"compute.heartbeat_interval", Type::kDuration, "2s", "How often agents report.", 100,
       600'000},
      {"compute.down_after", Type::kDuration, "10s",
       "A host whose agent has not reported for this long is marked down.", 500, kDay},
      {"compute.build_timeout", Type::kDuration, "10m",
       "A server not ACTIVE this long after create goes to ERROR.", 1000, kDay},
      {"compute.action_timeout", Type::kDuration, "5m",
       "A stop/start/reboot/resize/rebuild not finished this long goes to ERROR.", 1000, kDay},
      {"compute.max_user_data_bytes", Type::kInt, "65535",
       "Largest base64 user_data accepted on server create.", 0, 1 << 24},
      {"compute.view_cache_mb", Type::kInt, "16",
       "Memory for rendered server views (the list detail path); 0 turns the cache off.", 0,
       1 << 16},
      {"agent.server_url", Type::kString, "",
       "`concord agent`: URL of the concord server (http://host:port)."},
      {"agent.host", Type::kString, "",
       "Host name this agent registers as; empty: the machine's hostname."},
      {"agent.credential", Type::kString, "",
       "Per-host credential printed by `concord agent-credential <host>` on the server."},
      {"agent.state_dir", Type::kString, "",
       "Folder for the agent's instances and image cache; empty: <data_dir>/agent-<host>."},
      {"agent.drivers", Type::kString, "container,vm,inference,database",
       "Drivers to enable on this host: container (runc), vm (QEMU), inference (endpoint "
       "replicas), database (managed PostgreSQL / MariaDB instances); those whose probe fails "
       "are left out."},
      {"agent.availability_zone", Type::kString, "",
       "Availability zone of this host; empty: compute.availability_zone."},
      {"agent.vcpus", Type::kInt, "0", "vCPUs offered; 0 detects them.", 0, 1 << 20},
      {"agent.ram_mb", Type::kInt, "0", "RAM offered in MiB; 0 detects it.", 0, 1LL << 40},
      {"agent.disk_gb", Type::kInt, "0", "Disk offered in GiB; 0 detects it.", 0, 1LL << 30},
      {"agent.subnet", Type::kString, "10.99.0.0/24",
       "Private subnet for containers with network auto (one per host)."},
      {"agent.bridge", Type::kString, "concord0", "Linux bridge for containers on this host."},
      {"agent.vm_accel",
       Type::kString,
       "tcg",
       "VM accelerator: auto (KVM if a probe guest really runs under it, else TCG) or tcg. tcg by "
       "default: a probe guest can run under KVM on hosts where Linux guests then hang.",
       0,
       0,
       false,
       {"auto", "tcg"}},
      {"agent.database_proxy_networks", Type::kString, "*",
       "Networks (comma-separated addresses or CIDRs) whose connections to this host's MariaDB "
       "engines may name their real client in a PROXY header: the database endpoints' "
       "addresses. '*': any (engine addresses must then be reachable by endpoints and replicas "
       "only); empty: none (host-limited accounts then see the endpoint's address)."},
      {"agent.database_volumes",
       Type::kString,
       "loop",
       "Where a database instance's engine keeps its files. 'loop': a file system of the "
       "instance's volume size (a sparse ext4 image, loop-mounted; needs root), so a full "
       "volume stops that instance's writes and no other's. 'directory': a plain folder on the "
       "host's disk, whose use is only watched against the volume size.",
       0,
       0,
       false,
       {"loop", "directory"}},
      {"agent.enabled", Type::kBool, "true",
       "all-in-one: run an agent in-process (the same code path as `concord agent`)."},
      {"bootstrap.admin_password", Type::kString, "",
       "Password of the bootstrapped admin; empty generates one and writes it to the "
       "credentials files."},
      {"inference.max_model_mb", Type::kInt, "256",
       "Largest model version accepted by an upload, in MiB (413 beyond).", 1, 1 << 11},
      {"inference.check_timeout", Type::kDuration, "30s",
       "Time the runtime may take to load an uploaded model before the upload is refused.", 100,
       600'000},
      {"inference.gateway_max_in_flight", Type::kInt, "1024",
       "Inferences the endpoint gateway holds in flight at once; beyond it 503 with Retry-After.",
       1, 1 << 20},
      {"inference.gateway_threads", Type::kInt, "1",
       "Threads of the gateway's asynchronous client to the replicas.", 1, 64},
      {"database.address_pool", Type::kString, "127.77.0.0/16",
       "IPv4 CIDR that managed database instances get their own address from (all of 127/8 "
       "reaches the loopback interface, so these need no configuration)."},
      {"database.port_postgresql", Type::kInt, "5432",
       "Port PostgreSQL instances listen on at their own address.", 1, 65535},
      {"database.port_mariadb", Type::kInt, "3306",
       "Port MariaDB instances listen on at their own address.", 1, 65535},
      {"database.max_volume_gb", Type::kInt, "100",
       "Largest volume size (GB) a database instance may ask for (400 beyond).", 1, 1 << 20},
      {"database.quota_instances", Type::kInt, "10",
       "Database instances a project may hold unless an admin set its own (Trove's "
       "max_instances_per_tenant; -1: unlimited).",
       -1, 1 << 30},
      {"database.quota_volumes_gb", Type::kInt, "40",
       "GB of database volumes a project may hold (an HA instance's standby counts too).", -1,
       1 << 30},
      {"database.quota_backups", Type::kInt, "50",
       "Database backups a project may hold (automated ones count but are bounded by their "
       "retention).",
       -1, 1 << 30},
      {"database.quota_ram_mb", Type::kInt, "-1",
       "MB of RAM a project's database instances may hold (-1: unlimited, as Trove's default).", -1,
       1 << 30},
      {"database.endpoints", Type::kBool, "true",
       "Serve each database instance's address from a proxy in the server, the engine listening "
       "on a second address of the pool (stable endpoints; transaction pooling). false: the engine "
       "listens on the instance's address itself."},
      {"database.ha_replace_after", Type::kDuration, "120s",
       "How long the host of a high-availability instance's standby may be down before the "
       "standby is replaced by a new member on another host.",
       1000, kDay},
      {"database.apply_wait_ms", Type::kInt, "20000",
       "How long a change of an instance's databases, users or root waits for its agent to apply "
       "it before answering (0: answer at once; the change is asynchronous either way).",
       0, 600000},
  };
  return kOptions;
}

Config::Config() {
  for (const auto& o : options()) values_[o.name] = o.default_value;
}

Status Config::set(std::string_view name, std::string_view value) {
  const Option* o = find_option(name);
  if (!o) return fail(Code::kInvalidArgument, "unknown option '" + std::string(name) + "'");
  CONCORD_RETURN_IF_ERROR(validate(*o, value));
  values_[o->name] = std::string(value);
  return ok();
}

Status Config::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(Code::kInvalidArgument, "cannot read config file " + path);
  std::string line;
  std::string section;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string_view l = trim(line);
    if (l.empty() || l.front() == '#' || l.front() == ';') continue;
    auto where = path + ":" + std::to_string(lineno) + ": ";
    if (l.front() == '[') {
      if (l.back() != ']') return fail(Code::kInvalidArgument, where + "bad section header");
      section = std::string(trim(l.substr(1, l.size() - 2)));
      continue;
    }
    auto eq = l.find('=');
    if (eq == std::string_view::npos)
      return fail(Code::kInvalidArgument, where + "expected key = value");
    std::string key(trim(l.substr(0, eq)));
    std::string value(trim(l.substr(eq + 1)));
    std::string name = section.empty() ? key : section + "." + key;
    if (auto s = set(name, value); !s) {
      return fail(Code::kInvalidArgument, where + s.error().message());
    }
  }
  return ok();
}

std::string Config::str(std::string_view name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::string() : it->second;
}

int64_t Config::integer(std::string_view name) const {
  return parse_int(str(name)).value_or(0);
}

bool Config::boolean(std::string_view name) const {
  return parse_bool(str(name)).value_or(false);
}

int64_t Config::millis(std::string_view name) const {
  return parse_duration_ms(str(name)).value_or(0);
}

std::string Config::dump() const {
  std::ostringstream out;
  for (const auto& o : options()) out << o.name << " = " << str(o.name) << "\n";
  return out.str();
}

std::string Config::reference() {
  std::ostringstream out;
  for (const auto& o : options()) {
    out << o.name << " (" << type_name(o.type) << ", default '" << o.default_value << "'";
    if (o.type == Type::kInt) out << ", " << o.min << ".." << o.max;
    if (o.type == Type::kDuration) out << ", " << o.min << "ms.." << o.max << "ms";
    if (!o.choices.empty()) {
      out << ", one of";
      for (const auto& c : o.choices) out << " " << c;
    }
    out << (o.restart ? ", restart" : ", live") << ")\n    " << o.description << "\n";
  }
  return out.str();
}

Result<int64_t> parse_duration_ms(std::string_view text) {
  text = trim(text);
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0)
    return fail(Code::kInvalidArgument, "not a duration: '" + std::string(text) + "'");
  CONCORD_ASSIGN_OR_RETURN(int64_t n, parse_int(text.substr(0, digits)));
  std::string_view unit = text.substr(digits);
  int64_t mult;
  if (unit.empty() || unit == "s")
    mult = 1000;
  else if (unit == "ms")
    mult = 1;
  else if (unit == "m")
    mult = 60'000;
  else if (unit == "h")
    mult = 3'600'000;
  else if (unit == "d")
    mult = kDay;
  else
    return fail(Code::kInvalidArgument,
                "unknown duration unit in '" + std::string(text) + "' (ms, s, m, h, d)");
  if (n > (int64_t{1} << 50) / mult) return fail(Code::kInvalidArgument, "duration too large");
  return n * mult;
}

}  // namespace concord::config
