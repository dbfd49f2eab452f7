#include "compute/driver/process.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "compute/driver/util.h"

namespace concord::compute::driver {
namespace {

using std::chrono::milliseconds;

TEST(RunProcessTest, CapturesStdoutStderrAndExitCode) {
  auto r = run_process({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->signal, 0);
  EXPECT_FALSE(r->ok());
}

TEST(RunProcessTest, ArgumentsAreNotInterpretedByAShell) {
  auto r = run_process({"echo", "$HOME;", "`id`", "a b"});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->out, "$HOME; `id` a b\n");
  EXPECT_TRUE(r->ok());
}

TEST(RunProcessTest, TimeoutKillsTheWholeGroup) {
  // The grandchild holds the pipe open; the timeout must still end the call.
  auto start = std::chrono::steady_clock::now();
  auto r =
      run_process({"sh", "-c", "sleep 30 & sleep 30"}, RunOptions{.timeout = milliseconds(300)});
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(25));
}

TEST(RunProcessTest, MissingProgramIsFailedPrecondition) {
  auto r = run_process({"concord-no-such-program-xyz"});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("concord-no-such-program-xyz"), std::string::npos);
}

TEST(RunProcessTest, EmptyArgvIsInvalidArgument) {
  auto r = run_process({});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(RunProcessTest, RunCheckedMapsFailureWithStderr) {
  auto r = run_checked({"sh", "-c", "echo broken-thing >&2; exit 1"}, {}, Code::kUnavailable);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_NE(r.error().message().find("broken-thing"), std::string::npos);
  auto t = run_checked({"sleep", "5"}, RunOptions{.timeout = milliseconds(100)});
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kDeadlineExceeded);
}

TEST(RunProcessTest, OutputFileAppendsBothStreams) {
  std::string path = ::testing::TempDir() + "/process-test-output.log";
  std::remove(path.c_str());
  RunOptions options;
  options.output_file = path;
  ASSERT_TRUE(run_process({"sh", "-c", "echo one; echo two >&2"}, options).has_value());
  ASSERT_TRUE(run_process({"sh", "-c", "echo three"}, options).has_value());
  auto text = read_file(path);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text, "one\ntwo\nthree\n");
}

TEST(RunProcessTest, DetachedChildGetsItsOwnSession) {
  RunOptions options;
  options.detach = true;
  auto r = run_process({"sh", "-c", "cut -d' ' -f6 /proc/$$/stat; echo $$"}, options);
  ASSERT_TRUE(r.has_value());
  std::istringstream lines(r->out);
  long sid = 0, pid = 0;
  lines >> sid >> pid;
  EXPECT_EQ(sid, pid) << r->out;
  EXPECT_NE(sid, static_cast<long>(::getsid(0)));
}

TEST(RunProcessTest, CallerDescriptorsAreNotInherited) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // deliberately without O_CLOEXEC
  auto r = run_process({"sh", "-c", "ls /proc/self/fd"});
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_TRUE(r.has_value());
  // ls itself opens one directory fd; anything besides 0, 1, 2 and that one leaked.
  std::istringstream names(r->out);
  int count = 0;
  for (std::string n; names >> n;) ++count;
  EXPECT_LE(count, 4) << r->out;
}

TEST(UtilTest, ValidateIdRejectsPathTricks) {
  EXPECT_TRUE(validate_id("1b4e28ba-2fa1-11d2-883f-0016d3cca427").has_value());
  for (const char* bad : {"", "../etc", "a/b", "a b", "x;y"}) {
    auto st = validate_id(bad);
    ASSERT_FALSE(st.has_value()) << bad;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  }
  EXPECT_EQ(validate_id(std::string(65, 'a')).error().code(), Code::kInvalidArgument);
}

TEST(UtilTest, ProcessIdentityDetectsOwnProcess) {
  auto start = process_start_time(::getpid());
  ASSERT_TRUE(start.has_value());
  EXPECT_TRUE(process_matches(ProcessId{::getpid(), *start}));
  EXPECT_FALSE(process_matches(ProcessId{::getpid(), *start + 1}));
  EXPECT_FALSE(process_alive(0));
}

TEST(UtilTest, ReadTailReturnsTheEnd) {
  std::string path = ::testing::TempDir() + "/tail-test.txt";
  ASSERT_TRUE(write_file_atomic(path, "0123456789").has_value());
  EXPECT_EQ(read_tail(path, 4).value(), "6789");
  EXPECT_EQ(read_tail(path, 100).value(), "0123456789");
  EXPECT_EQ(read_tail(path + ".missing", 4).error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace concord::compute::driver
