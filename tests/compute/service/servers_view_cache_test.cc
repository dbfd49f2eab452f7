// ServerViewCache: hits only for the same (revision, variant), least-recently-used eviction
// within the byte bound, and a newer revision is never replaced by an older one.
#include <gtest/gtest.h>

#include "compute/service/view_cache.h"

namespace concord::compute {
namespace {

ServerViewCache::Text text(const std::string& s) {
  return std::make_shared<const std::string>(s);
}

TEST(ServerViewCacheTest, HitsOnlyTheSameRevisionAndVariant) {
  ServerViewCache cache(1 << 20);
  cache.put({{"a", 1}}, "2.79|user|x", {text("A1")});
  auto hit = cache.get({{"a", 1}}, "2.79|user|x");
  ASSERT_TRUE(hit[0]);
  EXPECT_EQ(*hit[0], "A1");
  EXPECT_FALSE(cache.get({{"a", 2}}, "2.79|user|x")[0]);   // the row changed
  EXPECT_FALSE(cache.get({{"a", 1}}, "2.1|user|x")[0]);    // another microversion
  EXPECT_FALSE(cache.get({{"a", 1}}, "2.79|admin|x")[0]);  // another caller kind
  EXPECT_FALSE(cache.get({{"b", 1}}, "2.79|user|x")[0]);   // never rendered
}

TEST(ServerViewCacheTest, EvictsTheLeastRecentlyUsedBeyondTheBound) {
  const std::string big(1000, 'x');
  ServerViewCache cache(3500);  // room for three entries of ~1.1 KB
  cache.put({{"a", 1}, {"b", 1}, {"c", 1}}, "v", {text(big), text(big), text(big)});
  EXPECT_EQ(cache.entries(), 3u);
  ASSERT_TRUE(cache.get({{"a", 1}}, "v")[0]);  // a is now the most recent
  cache.put({{"d", 1}}, "v", {text(big)});
  EXPECT_EQ(cache.entries(), 3u);
  EXPECT_LE(cache.bytes(), 3500u);
  EXPECT_TRUE(cache.get({{"a", 1}}, "v")[0]);
  EXPECT_FALSE(cache.get({{"b", 1}}, "v")[0]);  // the least recently used went
  EXPECT_TRUE(cache.get({{"d", 1}}, "v")[0]);
}

TEST(ServerViewCacheTest, KeepsTheNewerRevisionAndReplacesOtherwise) {
  ServerViewCache cache(1 << 20);
  cache.put({{"a", 5}}, "v", {text("A5")});
  cache.put({{"a", 4}}, "v", {text("A4")});  // a slower page rendered an older row
  EXPECT_EQ(*cache.get({{"a", 5}}, "v")[0], "A5");
  cache.put({{"a", 6}}, "w", {text("A6w")});
  EXPECT_FALSE(cache.get({{"a", 5}}, "v")[0]);
  EXPECT_EQ(*cache.get({{"a", 6}}, "w")[0], "A6w");
  EXPECT_EQ(cache.entries(), 1u);
}

TEST(ServerViewCacheTest, ZeroBytesCachesNothing) {
  ServerViewCache cache(0);
  cache.put({{"a", 1}}, "v", {text("A")});
  EXPECT_FALSE(cache.get({{"a", 1}}, "v")[0]);
  EXPECT_EQ(cache.entries(), 0u);
}

}  // namespace
}  // namespace concord::compute
