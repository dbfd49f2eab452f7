#pragma once
// Runs a program by argv (never through a shell), bounded in time. The one place the drivers
// fork: runc, qemu, qemu-img, xorriso, ip and tar all go through run_process().
//
// Children start in their own process group (or their own session with `detach`), so a timeout
// kills the whole group and a signal sent to the agent's group does not reach guests. File
// descriptors of the caller are never inherited (close_range CLOEXEC in the child). stdin is
// /dev/null.
#include <chrono>
#include <string>
#include <vector>

#include "base/result.h"

namespace concord::compute::driver {

struct RunOptions {
  std::chrono::milliseconds timeout{60000};
  // When set, stdout and stderr go to this file (opened O_APPEND|O_CREAT) instead of being
  // captured. Needed for programs whose descendants keep running with the same stdio (runc run
  // --detach hands its stdio to the container): a pipe would never reach EOF.
  std::string output_file;
  // setsid() in the child: processes that must outlive the agent.
  bool detach = false;
  // Captured output beyond this is dropped (the tail is kept).
  size_t max_output = 1 << 20;
};

struct ProcessResult {
  int exit_code = -1;  // valid when signal == 0
  int signal = 0;      // terminating signal, 0 if it exited
  bool timed_out = false;
  std::string out;
  std::string err;

  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  // "runc exited with status 1: <stderr tail>" style summary for error messages.
  std::string describe(const std::string& program) const;
};

// Errors: kFailedPrecondition when the program cannot be found or executed, kInternal when
// fork/pipe fail. A non-zero exit or a timeout is NOT an error here: the caller decides (see
// check_process).
[[nodiscard]] Result<ProcessResult> run_process(const std::vector<std::string>& argv,
                                                const RunOptions& options = {});

// run_process, then maps a failed run to an error: timeout -> kDeadlineExceeded, non-zero exit
// or signal -> `failure_code` with the program's stderr in the message.
[[nodiscard]] Result<ProcessResult> run_checked(const std::vector<std::string>& argv,
                                                const RunOptions& options = {},
                                                Code failure_code = Code::kInternal);

// Looks a program up on PATH (or checks an explicit path). Empty when not found.
std::string find_program(const std::string& name);

}  // namespace concord::compute::driver
