// The engines' host helpers (database/engine/engine_common.h) that need no engine binaries.
#include "database/engine/engine_common.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

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

// A WAL segment archived by a hard link is in pg_wal/ and in wal_archive/: the instance's disk
// use counts it once, and still counts every other file.
TEST(DiskUsage, CountsAFileWithSeveralLinksOnce) {
  char templ[] = "/tmp/concord-disk-usage-XXXXXX";
  ASSERT_NE(::mkdtemp(templ), nullptr);
  const std::string root = templ;
  std::filesystem::create_directories(root + "/data/pg_wal");
  std::filesystem::create_directories(root + "/wal_archive");
  auto write = [](const std::string& path, size_t bytes) {
    std::ofstream(path, std::ios::binary) << std::string(bytes, 'w');
  };
  write(root + "/data/pg_wal/segment", 1 << 20);
  write(root + "/data/table", 256 << 10);
  const int64_t alone = disk_usage({root + "/data"});
  ASSERT_GE(alone, (1 << 20) + (256 << 10));
  std::filesystem::create_hard_link(root + "/data/pg_wal/segment", root + "/wal_archive/segment");
  EXPECT_EQ(disk_usage({root + "/data", root + "/wal_archive"}), alone);
  write(root + "/wal_archive/copied", 512 << 10);
  EXPECT_GE(disk_usage({root + "/data", root + "/wal_archive"}), alone + (512 << 10));
  EXPECT_LT(disk_usage({root + "/data", root + "/wal_archive"}), alone + (1 << 20));
  std::filesystem::remove_all(root);
}

// A child running `script` under /bin/sh, not reaped until `reap` (an exited one is a zombie,
// which process_alive counts as gone, as it does an engine the agent did not start).
pid_t run_sh(const std::string& script) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}
void reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// An engine that keeps exiting during start-up (its address taken by another program, here
// played by a shell that says what PostgreSQL says then) fails the start after max_exits
// launches, with the engine's own words, not at the deadline with the refused connection
// that followed them.
TEST(WaitStarted, AnEngineThatKeepsExitingFailsWithItsOwnWords) {
  char templ[] = "/tmp/concord-start-XXXXXX";
  ASSERT_NE(::mkdtemp(templ), nullptr);
  const std::string log = std::string(templ) + "/engine.log";
  std::vector<pid_t> launched;
  EngineStart start{
      .what = "postgresql test",
      .log_path = log,
      .launch = [&]() -> Result<pid_t> {
        launched.push_back(run_sh("echo 'FATAL:  could not create any TCP/IP sockets' >> " + log));
        return launched.back();
      },
      .probe = [] { return Status(fail(Code::kUnavailable, "connection refused")); },
      .timeout = std::chrono::milliseconds(120000),
      .max_exits = 4};
  Status st = wait_started(0, start);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition) << st.error().to_string();
  EXPECT_NE(st.error().message().find("postgresql test did not start: it exited during start-up "
                                      "(4 times): FATAL:  could not create any TCP/IP sockets"),
            std::string::npos)
      << st.error().to_string();
  // The last launch's words only, not every launch's.
  const std::string& said = st.error().message();
  EXPECT_EQ(said.find("FATAL"), said.rfind("FATAL")) << said;
  EXPECT_EQ(launched.size(), 4u);
  for (pid_t pid : launched) reap(pid);
  std::filesystem::remove_all(templ);
}

// One exit is forgiven (a killed predecessor's shared memory held a moment longer): the next
// launch that answers makes the start succeed. An engine that never exits and never answers
// fails at the deadline with the probe's last error.
TEST(WaitStarted, OneExitIsLaunchedAgainAndTheDeadlineGivesTheProbesError) {
  char templ[] = "/tmp/concord-start-XXXXXX";
  ASSERT_NE(::mkdtemp(templ), nullptr);
  const std::string log = std::string(templ) + "/engine.log";
  std::vector<pid_t> launched;
  EngineStart start{
      .what = "mariadb test",
      .log_path = log,
      .launch = [&]() -> Result<pid_t> {
        launched.push_back(run_sh(launched.empty() ? "echo 'lock held' >> " + log + "; exit 1"
                                                   : std::string("exec sleep 60")));
        return launched.back();
      },
      .probe = [&]() -> Status {
        if (launched.size() < 2) return fail(Code::kUnavailable, "no socket yet");
        return ok();
      }};
  Status st = wait_started(0, start);
  EXPECT_TRUE(st) << st.error().to_string();
  EXPECT_EQ(launched.size(), 2u);

  // Running already (the pid given): nothing is launched, and the probe decides.
  start.probe = [] { return Status(fail(Code::kUnavailable, "connection refused")); };
  start.timeout = std::chrono::milliseconds(300);
  st = wait_started(launched.back(), start);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), Code::kDeadlineExceeded);
  EXPECT_NE(st.error().message().find("did not accept admin connections within 300 ms: "
                                      "connection refused"),
            std::string::npos)
      << st.error().to_string();
  EXPECT_EQ(launched.size(), 2u);
  for (pid_t pid : launched) reap(pid);
  std::filesystem::remove_all(templ);
}

// Engine cgroups nobody removed (their agent was killed for good): the sweep at an agent's
// start removes the empty, old ones that no instance of its own names, and nothing else.
TEST(SweepCgroups, RemovesOnlyOldEmptyGroupsOfNoKnownInstance) {
  char templ[] = "/tmp/concord-cgroups-XXXXXX";
  ASSERT_NE(::mkdtemp(templ), nullptr);
  EngineOptions options;
  options.cgroup_root = templ;
  options.cgroup_parent = "concord-database";
  const auto old = std::filesystem::file_time_type::clock::now() - std::chrono::hours(1);
  for (const char* controller : {"cpu", "memory"}) {
    const std::string parent = std::string(templ) + "/" + controller + "/concord-database";
    for (const char* id : {"gone", "hosted", "busy", "just-made"}) {
      std::filesystem::create_directories(parent + "/" + id);
    }
    // A group with something in it stands for one with processes (rmdir fails either way).
    std::ofstream(parent + "/busy/tasks") << "1\n";
    for (const char* id : {"gone", "hosted", "busy"}) {
      std::filesystem::last_write_time(parent + "/" + id, old);
    }
  }
  EXPECT_EQ(sweep_cgroups(options, {"hosted"}, std::chrono::minutes(10)), 2);
  for (const char* controller : {"cpu", "memory"}) {
    const std::string parent = std::string(templ) + "/" + controller + "/concord-database";
    EXPECT_FALSE(std::filesystem::exists(parent + "/gone")) << controller;
    EXPECT_TRUE(std::filesystem::exists(parent + "/hosted")) << controller;
    EXPECT_TRUE(std::filesystem::exists(parent + "/busy")) << controller;
    EXPECT_TRUE(std::filesystem::exists(parent + "/just-made")) << controller;
  }
  // No cgroup hierarchy at all (a host without cgroup v1): nothing to do, no error.
  options.cgroup_root = std::string(templ) + "/absent";
  EXPECT_EQ(sweep_cgroups(options, {}, std::chrono::minutes(10)), 0);
  std::filesystem::remove_all(templ);
}

}  // namespace
}  // namespace concord::database::engine::detail
