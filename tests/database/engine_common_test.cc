// The engines' host helpers (database/engine/engine_common.h) that need no engine binaries.
#include "database/engine/engine_common.h"

#include <gtest/gtest.h>

#include <string>

namespace concord::database::engine::detail {
namespace {

// A child that exits without reading its stdin (a client that could not connect) must not take
// the caller down with SIGPIPE: the agent died that way, silently. The test binary, like any
// caller of the library, keeps SIGPIPE's default action, so without the fix this test ends the
// whole process.
TEST(RunCommand, ChildThatIgnoresItsStdinDoesNotKillTheCaller) {
  CommandOptions o;
  o.stdin_data = std::string(8 << 20, 'x');  // more than a pipe holds: the write must block
  o.timeout = std::chrono::milliseconds(20000);
  for (int i = 0; i < 3; ++i) {
    auto r = run_command({"/bin/sh", "-c", "exec 0<&-; exit 3"}, o);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->exit_code, 3);
    EXPECT_FALSE(r->timed_out);
  }
}

}  // namespace
}  // namespace concord::database::engine::detail
