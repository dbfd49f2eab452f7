#pragma once
// Container networking on a Linux bridge, through iproute2 (`ip`).
//
// Each container with network "auto" gets a persistent named network namespace
// (/run/netns/concord-<id>, survives container restarts), a veth pair (host end on the bridge,
// other end eth0 in the namespace), an address from the subnet and a default route via the
// bridge, which holds the subnet's first address. Network "none" containers get a fresh
// namespace from runc instead (loopback only).
//
// Addresses are leased machine-wide: the bridge is shared by every agent on the machine, so
// the lease is a file /run/concord/ipam/<bridge>/<ip> created with O_EXCL whose content is the
// owning instance directory. A lease whose owner directory no longer exists is stale and is
// taken over (agent killed between allocation and destroy).
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord::compute::driver {

struct Subnet {
  uint32_t network = 0;
  int prefix = 24;

  uint32_t gateway() const { return network + 1; }
  uint32_t broadcast() const {
    return prefix == 0 ? 0xffffffffu : network | (0xffffffffu >> prefix);
  }
};

// "10.99.0.0/24" -> Subnet. kInvalidArgument for anything else, host bits set, or a prefix
// outside 8..30 (a subnet must hold a gateway and at least one host).
[[nodiscard]] Result<Subnet> parse_subnet(std::string_view cidr);
std::string ipv4_to_string(uint32_t address);
[[nodiscard]] Result<uint32_t> parse_ipv4(std::string_view text);

struct Lease {
  std::string ip;
  int prefix = 24;
  std::string gateway;
  std::string mac;
  std::string host_veth;
  std::string netns;
};

class BridgeNetwork {
 public:
  BridgeNetwork(std::string bridge, Subnet subnet, std::string lease_dir);

  // Creates the bridge with the gateway address if missing; safe against concurrent agents.
  [[nodiscard]] Status ensure_bridge();
  // Leases a free address for `owner_dir` (or returns the one it already holds).
  // kResourceExhausted when the subnet is full.
  [[nodiscard]] Result<Lease> allocate(std::string_view id, const std::string& owner_dir);
  // Re-takes a recorded lease (after a host reboot emptied /run). kAlreadyExists when another
  // live instance holds the address.
  [[nodiscard]] Status reclaim(const Lease& lease, const std::string& owner_dir);
  [[nodiscard]] Status release(const Lease& lease, const std::string& owner_dir);
  // Namespace + veth + address + route; converges a half-made setup.
  [[nodiscard]] Status setup(const Lease& lease);
  // Removes the veth and the namespace; ok when already gone.
  [[nodiscard]] Status teardown(const Lease& lease);

  static std::string netns_name(std::string_view id);
  static std::string host_veth_name(std::string_view id);
  static std::string mac_for(std::string_view id);

 private:
  Lease make_lease(std::string_view id, uint32_t address) const;
  // Tries to create the lease file; true when `owner_dir` holds it afterwards.
  Result<bool> try_lease(uint32_t address, const std::string& owner_dir);

  std::string bridge_;
  Subnet subnet_;
  std::string lease_dir_;
};

}  // namespace concord::compute::driver
