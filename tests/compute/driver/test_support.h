#pragma once
// Helpers shared by the driver tests: temp state dirs, polling with a generous bound (the
// machine is shared; nothing here gates on speed), and the fixture images.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

namespace concord::compute::driver::testing {

inline std::string images_dir() {
  const char* env = std::getenv("CONCORD_TEST_IMAGES");
  return env != nullptr ? env : CONCORD_DRIVER_IMAGES;
}

inline std::string image(const std::string& name) {
  return images_dir() + "/" + name;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/concord-drv-XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    if (made != nullptr) path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Polls `done` every 100 ms until it holds or `limit` passes.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

inline size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

}  // namespace concord::compute::driver::testing
