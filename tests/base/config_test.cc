#include "config/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace concord::config {
namespace {

TEST(Config, DefaultsAreValid) {
  Config c;
  for (const auto& o : options()) {
    Config copy;
    EXPECT_TRUE(copy.set(o.name, o.default_value).has_value()) << o.name;
  }
  EXPECT_EQ(c.integer("server.port"), 5000);
  EXPECT_EQ(c.millis("identity.token_ttl"), 3'600'000);
}

TEST(Config, RejectsUnknownOption) {
  Config c;
  auto s = c.set("server.prot", "1");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  EXPECT_NE(s.error().message().find("server.prot"), std::string::npos);
}

TEST(Config, RejectsOutOfRangeAndBadTypes) {
  Config c;
  auto s = c.set("server.port", "70000");
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find("[0, 65535]"), std::string::npos);
  EXPECT_FALSE(c.set("server.port", "12ab").has_value());
  EXPECT_FALSE(c.set("server.threads", "0").has_value());
  EXPECT_FALSE(c.set("identity.token_ttl", "0").has_value());  // below the 1 s minimum
  EXPECT_FALSE(c.set("identity.token_ttl", "1w").has_value());
  EXPECT_FALSE(c.set("log.level", "loud").has_value());
  EXPECT_TRUE(c.set("identity.token_ttl", "2h").has_value());
  EXPECT_EQ(c.millis("identity.token_ttl"), 7'200'000);
}

TEST(Config, LoadsIniFileWithSections) {
  std::string path = testing::TempDir() + "/concord_test.conf";
  {
    std::ofstream f(path);
    f << "# comment\ndata_dir = /tmp/x\n[server]\nport = 8080\nthreads=2\n[identity]\ntoken_ttl = "
         "30m\n";
  }
  Config c;
  ASSERT_TRUE(c.load_file(path).has_value());
  EXPECT_EQ(c.integer("server.port"), 8080);
  EXPECT_EQ(c.integer("server.threads"), 2);
  EXPECT_EQ(c.str("data_dir"), "/tmp/x");
  EXPECT_EQ(c.millis("identity.token_ttl"), 1'800'000);
}

TEST(Config, FileErrorsNameTheLine) {
  std::string path = testing::TempDir() + "/concord_bad.conf";
  {
    std::ofstream f(path);
    f << "[server]\nport = 1\nbogus = 2\n";
  }
  Config c;
  auto s = c.load_file(path);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find(":3:"), std::string::npos);
  EXPECT_NE(s.error().message().find("server.bogus"), std::string::npos);
}

TEST(Config, Durations) {
  EXPECT_EQ(*parse_duration_ms("500ms"), 500);
  EXPECT_EQ(*parse_duration_ms("3"), 3000);
  EXPECT_EQ(*parse_duration_ms("2d"), 2LL * 86'400'000);
  EXPECT_FALSE(parse_duration_ms("ms").has_value());
  EXPECT_FALSE(parse_duration_ms("99999999999999999999s").has_value());
}

}  // namespace
}  // namespace concord::config
