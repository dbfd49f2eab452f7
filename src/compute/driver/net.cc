#include "compute/driver/net.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "compute/driver/process.h"
#include "compute/driver/util.h"
#include "fmt/format.h"

namespace concord::compute::driver {

namespace {

constexpr std::chrono::milliseconds kIpTimeout{15000};

Status ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions options;
  options.timeout = kIpTimeout;
  CONCORD_RETURN_IF_ERROR(run_checked(argv, options, Code::kUnavailable));
  return ok();
}

bool link_exists(const std::string& name) {
  return path_exists("/sys/class/net/" + name);
}

}  // namespace

Result<uint32_t> parse_ipv4(std::string_view text) {
  uint32_t address = 0;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 4; ++i) {
    unsigned octet = 0;
    auto [next, ec] = std::from_chars(p, end, octet);
    if (ec != std::errc() || octet > 255 || next == p) {
      return fail(Code::kInvalidArgument, fmt::format("'{}' is not an IPv4 address", text));
    }
    address = (address << 8) | octet;
    p = next;
    if (i < 3) {
      if (p == end || *p != '.') {
        return fail(Code::kInvalidArgument, fmt::format("'{}' is not an IPv4 address", text));
      }
      ++p;
    }
  }
  if (p != end)
    return fail(Code::kInvalidArgument, fmt::format("'{}' is not an IPv4 address", text));
  return address;
}

std::string ipv4_to_string(uint32_t a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

Result<Subnet> parse_subnet(std::string_view cidr) {
  size_t slash = cidr.find('/');
  if (slash == std::string_view::npos) {
    return fail(Code::kInvalidArgument, fmt::format("subnet '{}' is not a.b.c.d/len", cidr));
  }
  CONCORD_ASSIGN_OR_RETURN(uint32_t network, parse_ipv4(cidr.substr(0, slash)));
  int prefix = -1;
  std::string_view len = cidr.substr(slash + 1);
  auto [next, ec] = std::from_chars(len.data(), len.data() + len.size(), prefix);
  if (ec != std::errc() || next != len.data() + len.size() || prefix < 8 || prefix > 30) {
    return fail(Code::kInvalidArgument,
                fmt::format("subnet '{}': prefix length must be 8..30", cidr));
  }
  uint32_t host_mask = 0xffffffffu >> prefix;
  if ((network & host_mask) != 0) {
    return fail(Code::kInvalidArgument, fmt::format("subnet '{}' has host bits set", cidr));
  }
  return Subnet{network, prefix};
}

BridgeNetwork::BridgeNetwork(std::string bridge, Subnet subnet, std::string lease_dir)
    : bridge_(std::move(bridge)), subnet_(subnet), lease_dir_(std::move(lease_dir)) {}

std::string BridgeNetwork::netns_name(std::string_view id) {
  return fmt::format("concord-{}", id);
}

std::string BridgeNetwork::host_veth_name(std::string_view id) {
  // Interface names are at most 15 bytes; a hash prefix keeps them unique per id.
  return "cv" + sha256_hex(id).substr(0, 12);
}

std::string BridgeNetwork::mac_for(std::string_view id) {
  std::string h = sha256_hex(std::string("mac:") + std::string(id));
  // 02: locally administered, unicast.
  return fmt::format("02:{}:{}:{}:{}:{}", h.substr(0, 2), h.substr(2, 2), h.substr(4, 2),
                     h.substr(6, 2), h.substr(8, 2));
}

Lease BridgeNetwork::make_lease(std::string_view id, uint32_t address) const {
  Lease lease;
  lease.ip = ipv4_to_string(address);
  lease.prefix = subnet_.prefix;
  lease.gateway = ipv4_to_string(subnet_.gateway());
  lease.mac = mac_for(id);
  lease.host_veth = host_veth_name(id);
  lease.netns = netns_name(id);
  return lease;
}

Status BridgeNetwork::ensure_bridge() {
  if (!link_exists(bridge_)) {
    auto created = ip({"link", "add", "name", bridge_, "type", "bridge"});
    // Another agent may have won the race; only fail if the bridge is still missing.
    if (!created && !link_exists(bridge_)) return created;
  }
  std::string gw = fmt::format("{}/{}", ipv4_to_string(subnet_.gateway()), subnet_.prefix);
  CONCORD_RETURN_IF_ERROR(ip({"addr", "replace", gw, "dev", bridge_}));
  CONCORD_RETURN_IF_ERROR(ip({"link", "set", bridge_, "up"}));
  return ok();
}

Result<bool> BridgeNetwork::try_lease(uint32_t address, const std::string& owner_dir) {
  std::string path = lease_dir_ + "/" + ipv4_to_string(address);
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      bool written =
          ::write(fd, owner_dir.data(), owner_dir.size()) == static_cast<ssize_t>(owner_dir.size());
      ::close(fd);
      if (!written) {
        ::unlink(path.c_str());
        return fail(Code::kInternal, fmt::format("cannot write lease {}", path));
      }
      return true;
    }
    if (errno != EEXIST) {
      return fail(Code::kInternal,
                  fmt::format("cannot create lease {}: {}", path, std::strerror(errno)));
    }
    auto holder = read_file(path);
    if (!holder) continue;  // released meanwhile: try again
    if (*holder == owner_dir) return true;
    // The holder's instance directory is gone (destroyed without releasing, or a dead test
    // agent's temp dir): the lease is stale.
    if (!holder->empty() && !path_exists(*holder)) {
      ::unlink(path.c_str());
      continue;
    }
    return false;
  }
  return false;
}

Result<Lease> BridgeNetwork::allocate(std::string_view id, const std::string& owner_dir) {
  CONCORD_RETURN_IF_ERROR(make_dirs(lease_dir_));
  for (uint32_t a = subnet_.gateway() + 1; a < subnet_.broadcast(); ++a) {
    CONCORD_ASSIGN_OR_RETURN(bool mine, try_lease(a, owner_dir));
    if (mine) return make_lease(id, a);
  }
  return fail(Code::kResourceExhausted,
              fmt::format("no free address left in {}/{} on bridge {}",
                          ipv4_to_string(subnet_.network), subnet_.prefix, bridge_));
}

Status BridgeNetwork::reclaim(const Lease& lease, const std::string& owner_dir) {
  CONCORD_RETURN_IF_ERROR(make_dirs(lease_dir_));
  CONCORD_ASSIGN_OR_RETURN(uint32_t a, parse_ipv4(lease.ip));
  CONCORD_ASSIGN_OR_RETURN(bool mine, try_lease(a, owner_dir));
  if (!mine) {
    return fail(Code::kAlreadyExists,
                fmt::format("address {} recorded for {} is leased to another instance", lease.ip,
                            owner_dir));
  }
  return ok();
}

Status BridgeNetwork::release(const Lease& lease, const std::string& owner_dir) {
  std::string path = lease_dir_ + "/" + lease.ip;
  auto holder = read_file(path);
  if (holder && *holder == owner_dir) ::unlink(path.c_str());
  return ok();
}

Status BridgeNetwork::setup(const Lease& lease) {
  std::string ns_path = "/run/netns/" + lease.netns;
  if (path_exists(ns_path) && link_exists(lease.host_veth)) {
    auto probe = run_process({"ip", "-n", lease.netns, "-o", "-4", "addr", "show", "dev", "eth0"},
                             RunOptions{.timeout = kIpTimeout});
    if (probe && probe->ok() && probe->out.find(" " + lease.ip + "/") != std::string::npos) {
      return ok();
    }
  }
  CONCORD_RETURN_IF_ERROR(teardown(lease));
  std::string peer = "cp" + lease.host_veth.substr(2);
  CONCORD_RETURN_IF_ERROR(ip({"netns", "add", lease.netns}));
  CONCORD_RETURN_IF_ERROR(ip({"link", "add", lease.host_veth, "type", "veth", "peer", "name", peer,
                              "netns", lease.netns}));
  CONCORD_RETURN_IF_ERROR(ip({"-n", lease.netns, "link", "set", peer, "name", "eth0"}));
  CONCORD_RETURN_IF_ERROR(ip({"-n", lease.netns, "link", "set", "eth0", "address", lease.mac}));
  CONCORD_RETURN_IF_ERROR(ip({"-n", lease.netns, "addr", "add",
                              fmt::format("{}/{}", lease.ip, lease.prefix), "dev", "eth0"}));
  CONCORD_RETURN_IF_ERROR(ip({"-n", lease.netns, "link", "set", "eth0", "up"}));
  CONCORD_RETURN_IF_ERROR(ip({"-n", lease.netns, "link", "set", "lo", "up"}));
  CONCORD_RETURN_IF_ERROR(
      ip({"-n", lease.netns, "route", "replace", "default", "via", lease.gateway}));
  CONCORD_RETURN_IF_ERROR(ip({"link", "set", lease.host_veth, "master", bridge_}));
  CONCORD_RETURN_IF_ERROR(ip({"link", "set", lease.host_veth, "up"}));
  return ok();
}

Status BridgeNetwork::teardown(const Lease& lease) {
  if (!lease.host_veth.empty() && link_exists(lease.host_veth)) {
    auto st = ip({"link", "del", lease.host_veth});
    if (!st && link_exists(lease.host_veth)) return st;
  }
  if (!lease.netns.empty() && path_exists("/run/netns/" + lease.netns)) {
    auto st = ip({"netns", "del", lease.netns});
    if (!st && path_exists("/run/netns/" + lease.netns)) return st;
  }
  return ok();
}

}  // namespace concord::compute::driver
