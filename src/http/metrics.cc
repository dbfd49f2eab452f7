#include "http/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "base/log.h"

namespace concord::http {
namespace {

void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '"':
        if (quote) {
          out += "\\\"";
        } else {
          out += c;
        }
        break;
      default: out += c;
    }
  }
}

// `route="x",method="GET"`: the series key, rendered once at creation.
std::string render_labels(const Labels& labels) {
  std::string out;
  for (const auto& [name, value] : labels) {
    if (!out.empty()) out += ',';
    out += name;
    out += "=\"";
    append_escaped(out, value, true);
    out += '"';
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void append_sample(std::string& out, const std::string& name, std::string_view suffix,
                   const std::string& labels, std::string_view extra_label, double value) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra_label.empty()) {
    out += '{';
    out += labels;
    if (!labels.empty() && !extra_label.empty()) out += ',';
    out += extra_label;
    out += '}';
  }
  out += ' ';
  out += format_value(value);
  out += '\n';
}

void atomic_add(std::atomic<double>& target, double by) {
  double cur = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(cur, cur + by, std::memory_order_relaxed)) {
  }
}

}  // namespace

void Counter::inc(double by) {
  if (!(by >= 0.0)) return;
  atomic_add(value_, by);
}

double Counter::value() const {
  return value_.load(std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  std::erase_if(bounds_, [](double b) { return std::isnan(b) || std::isinf(b); });
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1);
}

void Histogram::observe(double value) {
  // Prometheus buckets are "less than or equal": the first bound >= value.
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                 bounds_.begin());
  if (std::isnan(value)) i = bounds_.size();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  if (!std::isnan(value)) atomic_add(sum_, value);
}

void Histogram::snapshot(std::vector<uint64_t>& cumulative, double& sum, uint64_t& count) const {
  cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    cumulative[i] = total;
  }
  count = total;
  sum = sum_.load(std::memory_order_relaxed);
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::string key = render_labels(labels);
  std::lock_guard lock(mu_);
  Family& family = families_[name];
  if (family.type.empty()) {
    family.type = "counter";
    family.help = help;
  } else if (family.type != "counter" || family.computed) {
    logger("http")->error("metric {} is a {}{}, asked for as a counter; series not exported", name,
                          family.computed ? "computed " : "", family.type);
    return *detached_counters_.emplace_back(std::make_unique<Counter>());
  }
  auto& slot = family.counters[key];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               const Labels& labels, const std::vector<double>& bounds) {
  std::string key = render_labels(labels);
  std::lock_guard lock(mu_);
  Family& family = families_[name];
  if (family.type.empty()) {
    family.type = "histogram";
    family.help = help;
  } else if (family.type != "histogram") {
    logger("http")->error("metric {} is a {}, asked for as a histogram; series not exported", name,
                          family.type);
    return *detached_histograms_.emplace_back(std::make_unique<Histogram>(bounds));
  }
  auto& slot = family.histograms[key];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return *slot;
}

void Registry::gauge_fn(const std::string& name, const std::string& help,
                        std::function<double()> fn) {
  gauge_family_fn(name, help, [fn = std::move(fn)] { return GaugeSeries{{Labels{}, fn()}}; });
}

void Registry::gauge_family_fn(const std::string& name, const std::string& help,
                               std::function<GaugeSeries()> fn) {
  computed_family(name, help, "gauge", std::move(fn));
}

void Registry::counter_family_fn(const std::string& name, const std::string& help,
                                 std::function<GaugeSeries()> fn) {
  computed_family(name, help, "counter", std::move(fn));
}

void Registry::computed_family(const std::string& name, const std::string& help,
                               const std::string& type, std::function<GaugeSeries()> fn) {
  std::lock_guard lock(mu_);
  Family& family = families_[name];
  if (!family.type.empty() && (family.type != type || !family.computed)) {
    logger("http")->error("metric {} is a {}, asked for as a computed {}; not exported", name,
                          family.type, type);
    return;
  }
  family.type = type;
  family.help = help;
  family.computed = std::move(fn);
}

std::string Registry::render() const {
  // Computed families run outside the lock: they may be slow (reading /proc) or use the
  // registry.
  std::vector<std::pair<std::string, std::function<GaugeSeries()>>> computed;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, family] : families_) {
      if (family.computed) computed.emplace_back(name, family.computed);
    }
  }
  std::map<std::string, GaugeSeries> computed_values;
  for (auto& [name, fn] : computed) {
    try {
      computed_values[name] = fn();
    } catch (const std::exception& e) {
      logger("http")->error("metric {} threw: {}", name, e.what());
    } catch (...) {
      logger("http")->error("metric {} threw a non-exception", name);
    }
  }

  std::string out;
  std::vector<uint64_t> cumulative;
  std::lock_guard lock(mu_);
  for (const auto& [name, family] : families_) {
    std::string_view type = family.type;
    if (family.computed && !computed_values.contains(name)) continue;
    if (!family.computed && type == "counter" && family.counters.empty()) continue;
    if (!family.computed && type == "gauge") continue;  // registered without a function
    if (type == "histogram" && family.histograms.empty()) continue;
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped(out, family.help, false);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    if (family.computed) {
      for (const auto& [labels, value] : computed_values[name]) {
        append_sample(out, name, "", render_labels(labels), {}, value);
      }
    } else if (type == "counter") {
      for (const auto& [labels, c] : family.counters) {
        append_sample(out, name, "", labels, {}, c->value());
      }
    } else {
      for (const auto& [labels, h] : family.histograms) {
        double sum = 0;
        uint64_t count = 0;
        h->snapshot(cumulative, sum, count);
        const auto& bounds = h->bounds();
        std::string le;
        for (size_t i = 0; i <= bounds.size(); ++i) {
          le = "le=\"";
          le += i < bounds.size() ? format_value(bounds[i]) : "+Inf";
          le += '"';
          append_sample(out, name, "_bucket", labels, le, static_cast<double>(cumulative[i]));
        }
        append_sample(out, name, "_sum", labels, {}, sum);
        append_sample(out, name, "_count", labels, {}, static_cast<double>(count));
      }
    }
  }
  return out;
}

}  // namespace concord::http
