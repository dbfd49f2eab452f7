#pragma once
// Injected time. Token expiry, throttling and controllers take a Clock so tests can move
// time by hand instead of sleeping.
#include <atomic>
#include <chrono>

namespace concord {

using SystemTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SystemTime now() const = 0;
};

class RealClock final : public Clock {
 public:
  SystemTime now() const override { return std::chrono::system_clock::now(); }
};

// A clock that only moves when told to; thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(SystemTime start = SystemTime(std::chrono::seconds(1'800'000'000)))
      : now_us_(std::chrono::duration_cast<std::chrono::microseconds>(start.time_since_epoch())
                    .count()) {}
  SystemTime now() const override { return SystemTime(std::chrono::microseconds(now_us_.load())); }
  void advance(std::chrono::microseconds by) { now_us_ += by.count(); }
  void set(SystemTime t) {
    now_us_ = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  }

 private:
  std::atomic<long long> now_us_;
};

}  // namespace concord
