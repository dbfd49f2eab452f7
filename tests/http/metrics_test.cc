#include "http/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace concord::http {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(MetricsTest, CounterWithLabelsRendersHelpTypeAndSample) {
  Registry r;
  Counter& c = r.counter("concord_http_requests_total", "Requests.",
                         {{"route", "GET /v3"}, {"method", "GET"}, {"status", "200"}});
  c.inc();
  c.inc(2);
  EXPECT_EQ(r.render(),
            "# HELP concord_http_requests_total Requests.\n"
            "# TYPE concord_http_requests_total counter\n"
            "concord_http_requests_total{route=\"GET /v3\",method=\"GET\",status=\"200\"} 3\n");
}

TEST(MetricsTest, SameLabelsGiveTheSameSeries) {
  Registry r;
  Counter& a = r.counter("x_total", "X.", {{"k", "v"}});
  Counter& b = r.counter("x_total", "X.", {{"k", "v"}});
  Counter& other = r.counter("x_total", "X.", {{"k", "w"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &other);
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry r;
  r.counter("odd_total", "Line one\nback\\slash \"quoted\"", {{"path", "a\"b\\c\nd"}}).inc();
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "# HELP odd_total Line one\\nback\\\\slash \"quoted\"\n")) << text;
  EXPECT_TRUE(contains(text, "odd_total{path=\"a\\\"b\\\\c\\nd\"} 1\n")) << text;
}

TEST(MetricsTest, NegativeIncrementsAreIgnored) {
  Registry r;
  Counter& c = r.counter("c_total", "C.");
  c.inc(5);
  c.inc(-2);
  EXPECT_EQ(c.value(), 5);
  EXPECT_TRUE(contains(r.render(), "c_total 5\n"));
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry r;
  // Binary fractions, so the sum prints exactly.
  Histogram& h = r.histogram("lat_seconds", "Latency.", {{"route", "r"}}, {1.0, 0.125, 1.0});
  h.observe(0.0625);
  h.observe(0.125);  // le is inclusive
  h.observe(0.5);
  h.observe(4.0);
  EXPECT_EQ(h.bounds(), (std::vector<double>{0.125, 1.0}));
  EXPECT_EQ(r.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{route=\"r\",le=\"0.125\"} 2\n"
            "lat_seconds_bucket{route=\"r\",le=\"1\"} 3\n"
            "lat_seconds_bucket{route=\"r\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{route=\"r\"} 4.6875\n"
            "lat_seconds_count{route=\"r\"} 4\n");
  std::vector<uint64_t> cumulative;
  double sum = 0;
  uint64_t count = 0;
  h.snapshot(cumulative, sum, count);
  EXPECT_EQ(cumulative, (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(count, 4u);
}

TEST(MetricsTest, HistogramWithoutLabels) {
  Registry r;
  r.histogram("h", "H.", {}, {1}).observe(2);
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "h_bucket{le=\"1\"} 0\n")) << text;
  EXPECT_TRUE(contains(text, "h_bucket{le=\"+Inf\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "h_sum 2\nh_count 1\n")) << text;
}

TEST(MetricsTest, GaugeFunctionIsEvaluatedAtEachScrape) {
  Registry r;
  std::atomic<int> calls{0};
  r.gauge_fn("open_connections", "Open.", [&] { return static_cast<double>(++calls * 10); });
  EXPECT_EQ(calls.load(), 0);
  EXPECT_TRUE(contains(r.render(), "# TYPE open_connections gauge\nopen_connections 10\n"));
  EXPECT_TRUE(contains(r.render(), "open_connections 20\n"));
  EXPECT_EQ(calls.load(), 2);
}

TEST(MetricsTest, GaugeMayUseTheRegistryWithoutDeadlock) {
  Registry r;
  r.gauge_fn("families", "Uses the registry.", [&r] {
    r.counter("made_by_gauge_total", "Side effect.").inc();
    return 1.0;
  });
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "families 1\n")) << text;
}

TEST(MetricsTest, GaugeFamilyRendersOneSeriesPerLabelSet) {
  Registry r;
  std::vector<std::pair<Labels, double>> series = {{{{"instance", "a\"b"}}, 1},
                                                   {{{"instance", "c"}}, 0.5}};
  r.gauge_family_fn("db_up", "Per instance.", [&] { return series; });
  std::string text = r.render();
  EXPECT_TRUE(contains(text,
                       "# TYPE db_up gauge\ndb_up{instance=\"a\\\"b\"} 1\n"
                       "db_up{instance=\"c\"} 0.5\n"))
      << text;
  series.clear();  // no series now: the family is still declared, with no samples
  text = r.render();
  EXPECT_TRUE(contains(text, "# TYPE db_up gauge\n")) << text;
  EXPECT_FALSE(contains(text, "db_up{")) << text;
}

// Totals kept elsewhere (a proxy's counts) are exported as counters, computed at each scrape;
// they do not mix with counter() series of the same name, either way round.
TEST(MetricsTest, CounterFamilyIsComputedAtEachScrapeAndKeepsItsName) {
  Registry r;
  double waits = 2;
  r.counter_family_fn("pool_waits_total", "Waits.", [&] {
    return Registry::GaugeSeries{{{{"instance", "a"}}, waits}};
  });
  EXPECT_TRUE(contains(r.render(),
                       "# TYPE pool_waits_total counter\n"
                       "pool_waits_total{instance=\"a\"} 2\n"))
      << r.render();
  waits = 5;
  EXPECT_TRUE(contains(r.render(), "pool_waits_total{instance=\"a\"} 5\n")) << r.render();

  r.counter("pool_waits_total", "Counter.").inc(7);  // detached: the computed family stays
  r.counter("made_total", "Counter.").inc();
  r.counter_family_fn("made_total", "Computed.", [] { return Registry::GaugeSeries{{{}, 9}}; });
  r.gauge_fn("pool_waits_total", "Gauge.", [] { return 1.0; });  // refused as well
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "pool_waits_total{instance=\"a\"} 5\n")) << text;
  EXPECT_FALSE(contains(text, "pool_waits_total 7")) << text;
  EXPECT_FALSE(contains(text, "pool_waits_total 1")) << text;
  EXPECT_TRUE(contains(text, "# TYPE made_total counter\nmade_total 1\n")) << text;
  EXPECT_FALSE(contains(text, "made_total 9")) << text;
}

TEST(MetricsTest, ThrowingGaugeIsSkipped) {
  Registry r;
  r.gauge_fn("bad", "Throws.", []() -> double { throw std::runtime_error("no"); });
  r.gauge_fn("good", "Fine.", [] { return 1.5; });
  std::string text = r.render();
  EXPECT_FALSE(contains(text, "bad")) << text;
  EXPECT_TRUE(contains(text, "good 1.5\n")) << text;
}

TEST(MetricsTest, TypeMismatchIsNotExported) {
  Registry r;
  r.counter("m", "Counter.").inc();
  Histogram& h = r.histogram("m", "Histogram.", {}, {1});
  h.observe(0.5);  // usable, just not rendered
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "# TYPE m counter\nm 1\n")) << text;
  EXPECT_FALSE(contains(text, "m_bucket")) << text;
}

TEST(MetricsTest, FamiliesAreSortedByName) {
  Registry r;
  r.counter("b_total", "B.").inc();
  r.counter("a_total", "A.").inc();
  std::string text = r.render();
  EXPECT_LT(text.find("a_total"), text.find("b_total"));
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  Counter& c = r.counter("n_total", "N.");
  Histogram& h = r.histogram("n_seconds", "N.", {}, {0.5});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 40000);
  std::vector<uint64_t> cumulative;
  double sum = 0;
  uint64_t count = 0;
  h.snapshot(cumulative, sum, count);
  EXPECT_EQ(cumulative, (std::vector<uint64_t>{20000, 40000}));
  EXPECT_EQ(count, 40000u);
  EXPECT_DOUBLE_EQ(sum, 20000 * 0.25 + 20000 * 1.0);
}

}  // namespace
}  // namespace concord::http
