// Scheduler benchmark: 10,000 servers of mixed flavors onto 1,000 simulated hosts, one decision
// per server, with Concord's Scheduler in pack and spread mode, place() (the stateless path the
// Nova API calls), and two baselines over the same inputs: first-fit (first host in name order
// that fits) and random (a uniformly random host among those that fit). Prints one markdown
// table: decisions per second (min / median / max over the repeats) and hosts used against the
// lower bound. See docs/benchmarks.md ("Scheduler") for the method.
#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "compute/scheduler/scheduler.h"

namespace {

using concord::compute::scheduler::HostState;
using concord::compute::scheduler::Options;
using concord::compute::scheduler::Request;
using concord::compute::scheduler::Resources;
using concord::compute::scheduler::Scheduler;

// splitmix64: the same sequence on every platform and standard library, unlike std::
// distributions, so every run places the same servers in the same order.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

struct Flavor {
  const char* name;
  Resources size;
  int per_100;  // share of the servers, per 100
};

// General-purpose m1 flavors (1-2 GiB per vCPU, CPU-bound on a 1:4 host) mixed with
// memory-optimized r1 flavors (8 GiB per vCPU, RAM-bound), so neither dimension alone decides
// where a server fits.
const Flavor kFlavors[] = {
    {"m1.tiny 1/512/1", {1, 512, 1}, 30},        {"m1.small 2/2048/20", {2, 2048, 20}, 20},
    {"m1.medium 4/8192/40", {4, 8192, 40}, 20},  {"m1.large 8/16384/80", {8, 16384, 80}, 5},
    {"r1.large 2/16384/40", {2, 16384, 40}, 10}, {"r1.xlarge 4/32768/80", {4, 32768, 80}, 15},
};
const Resources kHost{32, 128 * 1024, 1000};

struct Config {
  int servers = 10000;
  int hosts = 1000;
  int repeats = 5;
  int place_servers = 1000;  // place() rebuilds its working copy per call: fewer decisions
  uint64_t seed = 42;
};

std::vector<Resources> make_servers(const Config& config) {
  std::vector<Resources> out;
  for (int i = 0; i < config.servers; ++i) {
    // Exact shares: server i gets the flavor whose cumulative share covers i mod 100.
    int slot = i % 100;
    for (const Flavor& f : kFlavors) {
      if (slot < f.per_100) {
        out.push_back(f.size);
        break;
      }
      slot -= f.per_100;
    }
  }
  Rng rng{config.seed};
  for (size_t i = out.size() - 1; i > 0; --i) std::swap(out[i], out[rng.below(i + 1)]);
  return out;
}

std::vector<HostState> make_hosts(const Config& config) {
  std::vector<HostState> out;
  for (int i = 0; i < config.hosts; ++i) {
    HostState h;
    h.name = fmt::format("host-{:04d}", i + 1);
    h.total = kHost;
    h.drivers = {"container", "vm"};
    out.push_back(std::move(h));
  }
  return out;
}

struct RunResult {
  double seconds = 0;      // wall clock
  double cpu_seconds = 0;  // this thread's CPU time: less sensitive to a busy machine
  int decisions = 0;       // placed or not
  int placed = 0;
  int hosts_used = 0;
};

int count_used(const std::vector<int64_t>& instances) {
  return static_cast<int>(
      std::count_if(instances.begin(), instances.end(), [](int64_t n) { return n > 0; }));
}

using Clock = std::chrono::steady_clock;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Times `work` on the wall clock and on this thread's CPU clock.
template <typename F>
void timed(RunResult& r, F&& work) {
  const double cpu_start = thread_cpu_seconds();
  const auto start = Clock::now();
  work();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.cpu_seconds = thread_cpu_seconds() - cpu_start;
}

RunResult run_scheduler(const Config& config, const std::vector<Resources>& servers,
                        Options::Weigher weigher) {
  Options options;
  options.cpu_allocation_ratio = options.ram_allocation_ratio = options.disk_allocation_ratio = 1.0;
  options.weigher = weigher;
  auto hosts = make_hosts(config);
  auto scheduler = Scheduler::create(hosts, options);
  if (!scheduler) {
    std::fprintf(stderr, "create: %s\n", scheduler.error().to_string().c_str());
    std::exit(2);
  }
  Request request;
  request.driver = "container";
  RunResult r;
  timed(r, [&] {
    for (const Resources& s : servers) {
      request.per_instance = s;
      auto placed = scheduler->place(request);
      ++r.decisions;
      if (placed) ++r.placed;
    }
  });
  std::vector<int64_t> instances;
  for (const HostState& h : scheduler->hosts()) instances.push_back(h.instances);
  r.hosts_used = count_used(instances);
  return r;
}

// place(), the stateless call: the bench feeds each decision's claim back into its snapshot,
// as the Nova API's next transaction would read it from the store.
RunResult run_place(const Config& config, const std::vector<Resources>& servers) {
  Options options;
  options.cpu_allocation_ratio = options.ram_allocation_ratio = options.disk_allocation_ratio = 1.0;
  options.weigher = Options::Weigher::kPack;
  auto hosts = make_hosts(config);
  Request request;
  request.driver = "container";
  RunResult r;
  const int n = std::min<int>(config.place_servers, static_cast<int>(servers.size()));
  timed(r, [&] {
    for (int k = 0; k < n; ++k) {
      request.per_instance = servers[k];
      auto placed = concord::compute::scheduler::place(hosts, request, options);
      ++r.decisions;
      if (!placed) continue;
      ++r.placed;
      // Host names are "host-NNNN", 1-based, in order.
      const size_t i = std::stoul(placed->hosts[0].substr(5)) - 1;
      hosts[i].used.vcpus += servers[k].vcpus;
      hosts[i].used.ram_mb += servers[k].ram_mb;
      hosts[i].used.disk_gb += servers[k].disk_gb;
      ++hosts[i].instances;
    }
  });
  return r;
}

// Baselines over plain arrays: the fairest (fastest) form of each policy.
RunResult run_baseline(const Config& config, const std::vector<Resources>& servers, bool random,
                       uint64_t seed) {
  const size_t n = static_cast<size_t>(config.hosts);
  std::vector<int64_t> cpu(n, kHost.vcpus), ram(n, kHost.ram_mb), disk(n, kHost.disk_gb);
  std::vector<int64_t> instances(n, 0);
  Rng rng{seed};
  RunResult r;
  timed(r, [&] {
    for (const Resources& s : servers) {
      size_t chosen = n;
      uint64_t seen = 0;
      for (size_t i = 0; i < n; ++i) {
        if (cpu[i] < s.vcpus || ram[i] < s.ram_mb || disk[i] < s.disk_gb) continue;
        if (!random) {
          chosen = i;
          break;
        }
        // Reservoir sampling: uniform among the hosts that fit, in one pass.
        if (rng.below(++seen) == 0) chosen = i;
      }
      ++r.decisions;
      if (chosen == n) continue;
      cpu[chosen] -= s.vcpus;
      ram[chosen] -= s.ram_mb;
      disk[chosen] -= s.disk_gb;
      ++instances[chosen];
      ++r.placed;
    }
  });
  r.hosts_used = count_used(instances);
  return r;
}

int lower_bound_hosts(const std::vector<Resources>& servers) {
  Resources sum;
  for (const Resources& s : servers) {
    sum.vcpus += s.vcpus;
    sum.ram_mb += s.ram_mb;
    sum.disk_gb += s.disk_gb;
  }
  auto need = [](int64_t demand, int64_t capacity) {
    return static_cast<int>((demand + capacity - 1) / capacity);
  };
  return std::max({need(sum.vcpus, kHost.vcpus), need(sum.ram_mb, kHost.ram_mb),
                   need(sum.disk_gb, kHost.disk_gb)});
}

struct Row {
  std::string name;
  std::function<RunResult(int repeat)> run;
  bool counts_hosts = true;
  std::vector<RunResult> results;
};

void usage() {
  std::puts(
      "usage: scheduler_bench [--repeats N] [--servers N] [--hosts N] [--place-servers N] "
      "[--seed N]");
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    auto value = [&]() -> long {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return std::strtol(argv[++i], nullptr, 10);
    };
    if (!std::strcmp(argv[i], "--repeats")) {
      config.repeats = static_cast<int>(value());
    } else if (!std::strcmp(argv[i], "--servers")) {
      config.servers = static_cast<int>(value());
    } else if (!std::strcmp(argv[i], "--hosts")) {
      config.hosts = static_cast<int>(value());
    } else if (!std::strcmp(argv[i], "--place-servers")) {
      config.place_servers = static_cast<int>(value());
    } else if (!std::strcmp(argv[i], "--seed")) {
      config.seed = static_cast<uint64_t>(value());
    } else {
      usage();
      return std::strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  if (config.repeats < 1 || config.servers < 1 || config.hosts < 1) {
    usage();
    return 2;
  }

  const auto servers = make_servers(config);
  const int bound = lower_bound_hosts(servers);

  std::vector<Row> rows;
  rows.push_back({"Scheduler, pack",
                  [&](int) { return run_scheduler(config, servers, Options::Weigher::kPack); }});
  rows.push_back({"Scheduler, spread",
                  [&](int) { return run_scheduler(config, servers, Options::Weigher::kSpread); }});
  rows.push_back(
      {"first-fit baseline", [&](int) { return run_baseline(config, servers, false, 0); }});
  rows.push_back({"random baseline", [&](int repeat) {
                    return run_baseline(config, servers, true, config.seed + 1000 + repeat);
                  }});
  rows.push_back({fmt::format("place() per call, pack (first {} servers)",
                              std::min(config.place_servers, config.servers)),
                  [&](int) { return run_place(config, servers); }, false});

  // Interleaved: repeat by repeat, row by row, so background load hits every row alike.
  for (int repeat = 0; repeat < config.repeats; ++repeat) {
    for (Row& row : rows) row.results.push_back(row.run(repeat));
  }

  std::printf(
      "%d servers onto %d hosts of %ld vCPU / %ld MiB / %ld GB, allocation ratios 1.0, "
      "seed %lu, %d repeats\n\n",
      config.servers, config.hosts, static_cast<long>(kHost.vcpus), static_cast<long>(kHost.ram_mb),
      static_cast<long>(kHost.disk_gb), static_cast<unsigned long>(config.seed), config.repeats);
  std::printf("Flavor mix per 100 servers:");
  for (const Flavor& f : kFlavors) std::printf(" %d x %s;", f.per_100, f.name);
  std::printf(
      "\nLower bound: %d hosts (total demand / host capacity, worst dimension, rounded "
      "up)\n\n",
      bound);
  std::printf(
      "| placement | decisions/s min | median | max | decisions per CPU-second (median) | placed "
      "| hosts used (median) | vs lower bound |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
  double pack_median_rate = 0;
  int pack_hosts = 0;
  for (Row& row : rows) {
    std::vector<double> rates;
    std::vector<double> cpu_rates;
    std::vector<int> used;
    for (const RunResult& r : row.results) {
      rates.push_back(r.decisions / r.seconds);
      cpu_rates.push_back(r.decisions / r.cpu_seconds);
      used.push_back(r.hosts_used);
    }
    std::sort(cpu_rates.begin(), cpu_rates.end());
    std::sort(rates.begin(), rates.end());
    std::sort(used.begin(), used.end());
    const double median = rates[rates.size() / 2];
    const int median_used = used[used.size() / 2];
    std::string hosts_cell = row.counts_hosts ? fmt::format("{}", median_used) : "-";
    std::string ratio_cell =
        row.counts_hosts
            ? fmt::format("{:+.1f}%", 100.0 * (median_used - bound) / static_cast<double>(bound))
            : "-";
    std::printf("| %s | %.0f | %.0f | %.0f | %.0f | %d | %s | %s |\n", row.name.c_str(),
                rates.front(), median, rates.back(), cpu_rates[cpu_rates.size() / 2],
                row.results.front().placed, hosts_cell.c_str(), ratio_cell.c_str());
    if (row.name == "Scheduler, pack") {
      pack_median_rate = median;
      pack_hosts = median_used;
    }
  }
  const double over = 100.0 * (pack_hosts - bound) / static_cast<double>(bound);
  std::printf(
      "\nGoals (issue 3): pack decisions/s >= 20,000: %s (median %.0f); pack hosts "
      "within 5%% of the lower bound: %s (%d vs %d, %+.1f%%)\n",
      pack_median_rate >= 20000 ? "met" : "NOT met", pack_median_rate,
      over <= 5.0 ? "met" : "NOT met", pack_hosts, bound, over);
  return 0;
}
