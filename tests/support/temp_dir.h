#pragma once
// A private folder under the system temp dir for one test, removed with everything in it.
// Shared by the test harnesses (tests/support is on their include path through
// concord_test_support).
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace concord::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "concord-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();  // no temp dir: nothing can run
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace concord::testing
