#pragma once
// Small helpers shared by the store tests.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "base/result.h"

// Asserts that a Result/Status is ok, printing the error otherwise.
#define ASSERT_OK(expr)                                                              \
  do {                                                                               \
    const auto& concord_test_r_ = (expr);                                            \
    ASSERT_TRUE(concord_test_r_.has_value()) << concord_test_r_.error().to_string(); \
  } while (false)

#define EXPECT_OK(expr)                                                              \
  do {                                                                               \
    const auto& concord_test_r_ = (expr);                                            \
    EXPECT_TRUE(concord_test_r_.has_value()) << concord_test_r_.error().to_string(); \
  } while (false)

// Expects a Result/Status to have failed with exactly `code`.
#define EXPECT_CODE(expr, expected_code)                                                     \
  do {                                                                                       \
    const auto& concord_test_r_ = (expr);                                                    \
    if (concord_test_r_.has_value()) {                                                       \
      ADD_FAILURE() << #expr " succeeded; expected " << ::concord::code_name(expected_code); \
    } else {                                                                                 \
      EXPECT_EQ(concord_test_r_.error().code(), expected_code)                               \
          << concord_test_r_.error().to_string();                                            \
    }                                                                                        \
  } while (false)

namespace concord::test_support {

// A directory under /tmp removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "concord-store-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
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

}  // namespace concord::test_support
