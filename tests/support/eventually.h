#pragma once
// Polls a condition every 50 ms until it holds or `limit` passes, and answers whether it held:
// for tests that wait on processes, threads and servers (never a speed check: the limit is a
// bound on a hang, far above what the wait takes).
#include <chrono>
#include <functional>
#include <thread>

namespace concord::test_support {

inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds limit = std::chrono::seconds(90)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

}  // namespace concord::test_support
