#pragma once
// A small Prometheus registry (prometheus-cpp is not in Debian 12): counters and histograms
// with labels, and gauge and counter families computed at scrape time, rendered in the text
// exposition format 0.0.4. Updates are lock-free on the
// hot path after a series exists; creating a series takes a mutex.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace concord::http {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing value. inc() with a negative or NaN amount is ignored: a counter
// that goes down would be read as a process restart by Prometheus' rate().
class Counter {
 public:
  void inc(double by = 1.0);
  double value() const;

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets. `bounds` are upper bounds (sorted and deduplicated
// here; +Inf is implicit). Buckets are stored non-cumulatively so observe() touches one slot;
// snapshot() accumulates them, and count is the total of the buckets so that the +Inf bucket
// always equals _count in a scrape.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  const std::vector<double>& bounds() const { return bounds_; }
  // Snapshot: cumulative bucket counts (one per bound, then +Inf), sum, count.
  void snapshot(std::vector<uint64_t>& cumulative, double& sum, uint64_t& count) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1 (the +Inf overflow)
  std::atomic<double> sum_{0.0};
};

// Families by name, each with one series per distinct label set. counter() and histogram()
// return a reference that stays valid for the registry's lifetime, so hot paths look a series
// up once and keep the pointer. Asking for an existing name with another type is a programming
// error: it is logged and the returned series is never rendered (the scrape stays valid).
class Registry {
 public:
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const Labels& labels,
                       const std::vector<double>& bounds);
  // Gauges are computed at scrape time, outside the registry's lock (so `fn` may use the
  // registry). Registering a name again replaces the function.
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn);
  // A gauge family whose series (label set, value) `fn` computes at scrape time, e.g. one
  // series per managed database instance. Same rules as gauge_fn.
  using GaugeSeries = std::vector<std::pair<Labels, double>>;
  void gauge_family_fn(const std::string& name, const std::string& help,
                       std::function<GaugeSeries()> fn);
  // A counter family computed at scrape time from totals another component keeps (e.g. a
  // proxy's own counts): each value must only grow while its source lives. A name already
  // holding counter() series is not replaced (logged); counter() on this name is detached.
  void counter_family_fn(const std::string& name, const std::string& help,
                         std::function<GaugeSeries()> fn);
  // The text exposition format 0.0.4, families sorted by name.
  std::string render() const;

 private:
  struct Family {
    std::string help;
    std::string type;  // as rendered: counter, gauge or histogram
    std::map<std::string, std::unique_ptr<Counter>> counters;      // key: rendered labels
    std::map<std::string, std::unique_ptr<Histogram>> histograms;  // key: rendered labels
    // gauge_fn, gauge_family_fn, counter_family_fn: the series computed at scrape time.
    std::function<GaugeSeries()> computed;
  };
  void computed_family(const std::string& name, const std::string& help, const std::string& type,
                       std::function<GaugeSeries()> fn);
  mutable std::mutex mu_;  // guards families_ and detached_* (not the series' values)
  std::map<std::string, Family> families_;
  // Series handed out for a name already registered with another type (see above).
  std::vector<std::unique_ptr<Counter>> detached_counters_;
  std::vector<std::unique_ptr<Histogram>> detached_histograms_;
};

}  // namespace concord::http
