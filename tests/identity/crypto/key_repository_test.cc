#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/log.h"
#include "identity/crypto/token.h"
#include "temp_dir.h"

namespace concord::identity {
namespace {

using testing::TempDir;

// Rotations log at info; hundreds of them would bury a failure's output. Applies to the
// whole test binary.
[[maybe_unused]] const bool kQuietLogs = (set_log_level("warn"), true);

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

std::unique_ptr<KeyRepository> open_repo(const std::string& dir, int max_active_keys) {
  Result<std::unique_ptr<KeyRepository>> repo = KeyRepository::open(dir, max_active_keys);
  EXPECT_TRUE(repo.has_value()) << repo.error().to_string();
  return repo ? std::move(*repo) : nullptr;
}

std::string key_text(const std::string& dir, int index) {
  return read_file(dir + "/" + std::to_string(index));
}

TEST(KeyRepositoryTest, OpenCreatesPrivateFolderWithStagedAndPrimaryKeys) {
  TempDir tmp;
  const std::string dir = tmp.sub("a/b/keys");
  auto repo = open_repo(dir, 3);
  ASSERT_TRUE(repo);
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 1}));
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(dir + "/0"), 0600u);
  EXPECT_EQ(mode_of(dir + "/1"), 0600u);
  EXPECT_EQ(key_text(dir, 0).size(), 44u);
  EXPECT_NE(key_text(dir, 0), key_text(dir, 1));
  std::vector<FernetKey> keys = repo->keys();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].to_base64(), key_text(dir, 1));  // primary first
  EXPECT_EQ(keys[1].to_base64(), key_text(dir, 0));  // then staged
  EXPECT_EQ(repo->primary().to_base64(), key_text(dir, 1));
  EXPECT_EQ(repo->snapshot()->size(), 2u);
  // No temp files left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST(KeyRepositoryTest, OpenExistingFolderKeepsItsKeys) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  std::string primary;
  {
    auto repo = open_repo(dir, 3);
    ASSERT_TRUE(repo);
    primary = repo->primary().to_base64();
  }
  auto again = open_repo(dir + "/", 3);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->primary().to_base64(), primary);
  EXPECT_EQ(again->dir(), dir);
}

TEST(KeyRepositoryTest, RejectsBadArguments) {
  TempDir tmp;
  for (int max : {-1, 0, 1}) {
    Result<std::unique_ptr<KeyRepository>> repo = KeyRepository::open(tmp.sub("k"), max);
    ASSERT_FALSE(repo.has_value());
    EXPECT_EQ(repo.error().code(), Code::kInvalidArgument);
    EXPECT_NE(repo.error().message().find("at least 2"), std::string::npos);
  }
  Result<std::unique_ptr<KeyRepository>> empty = KeyRepository::open("", 3);
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), Code::kInvalidArgument);

  write_file(tmp.sub("file"), "x");
  Result<std::unique_ptr<KeyRepository>> not_dir = KeyRepository::open(tmp.sub("file"), 3);
  ASSERT_FALSE(not_dir.has_value());
  EXPECT_EQ(not_dir.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(not_dir.error().message().find(tmp.sub("file")), std::string::npos);
}

TEST(KeyRepositoryTest, RotationPromotesStagedAndPrunesOldest) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  auto repo = open_repo(dir, 3);
  ASSERT_TRUE(repo);
  const std::string staged0 = key_text(dir, 0);
  const std::string primary1 = key_text(dir, 1);

  ASSERT_TRUE(repo->rotate().has_value());
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(key_text(dir, 2), staged0);  // the staged key became primary
  EXPECT_NE(key_text(dir, 0), staged0);  // and a new staged key exists
  EXPECT_EQ(mode_of(dir + "/0"), 0600u);
  std::vector<FernetKey> keys = repo->keys();
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].to_base64(), staged0);
  EXPECT_EQ(keys[1].to_base64(), key_text(dir, 0));
  EXPECT_EQ(keys[2].to_base64(), primary1);

  const std::string staged_after_first = key_text(dir, 0);
  ASSERT_TRUE(repo->rotate().has_value());
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 2, 3}));  // 1 pruned: 3 files at most
  EXPECT_EQ(key_text(dir, 3), staged_after_first);
  EXPECT_FALSE(std::filesystem::exists(dir + "/1"));
  keys = repo->keys();
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].to_base64(), key_text(dir, 3));
  EXPECT_EQ(keys[1].to_base64(), key_text(dir, 0));
  EXPECT_EQ(keys[2].to_base64(), key_text(dir, 2));
}

TEST(KeyRepositoryTest, LargerRepositoryOrdersSecondariesNewestFirst) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  auto repo = open_repo(dir, 5);
  ASSERT_TRUE(repo);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(repo->rotate().has_value());
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 4, 5, 6, 7}));
  std::vector<FernetKey> keys = repo->keys();
  ASSERT_EQ(keys.size(), 5u);
  const int order[] = {7, 0, 6, 5, 4};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(keys[i].to_base64(), key_text(dir, order[i])) << i;
}

TEST(KeyRepositoryTest, MalformedKeyFileIsNamedInTheError) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  auto repo = open_repo(dir, 3);
  ASSERT_TRUE(repo);
  const std::vector<FernetKey> before = repo->keys();
  write_file(dir + "/5", "this is not a key");

  Result<std::unique_ptr<KeyRepository>> other = KeyRepository::open(dir, 3);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(other.error().message().find(dir + "/5"), std::string::npos) << other.error().message();

  // reload fails the same way and keeps the keys in use.
  Status st = repo->reload();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(st.error().message().find(dir + "/5"), std::string::npos);
  EXPECT_EQ(repo->keys().size(), before.size());
  EXPECT_EQ(repo->primary().to_base64(), before[0].to_base64());

  // So does rotate, without touching the folder.
  Status rot = repo->rotate();
  ASSERT_FALSE(rot.has_value());
  EXPECT_EQ(rot.error().code(), Code::kFailedPrecondition);
  EXPECT_FALSE(std::filesystem::exists(dir + "/6"));

  write_file(dir + "/5", std::string(31, 'A'));  // base64 but 23 bytes
  Status wrong_size = repo->reload();
  ASSERT_FALSE(wrong_size.has_value());
  EXPECT_NE(wrong_size.error().message().find("32"), std::string::npos);

  write_file(dir + "/5", std::string(5000, 'A'));
  Status huge = repo->reload();
  ASSERT_FALSE(huge.has_value());
  EXPECT_NE(huge.error().message().find("larger than"), std::string::npos);
}

TEST(KeyRepositoryTest, OddFileNames) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  auto repo = open_repo(dir, 3);
  ASSERT_TRUE(repo);
  // Non-numeric names are not keys.
  write_file(dir + "/README", "keys live here");
  write_file(dir + "/1.bak", "junk");
  ASSERT_TRUE(repo->reload().has_value());
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 1}));
  // A numeric name with a leading zero or too many digits is a mistake worth reporting.
  for (const std::string name : {"01", "1234567890"}) {
    write_file(dir + "/" + name, key_text(dir, 1));
    Status st = repo->reload();
    ASSERT_FALSE(st.has_value()) << name;
    EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
    EXPECT_NE(st.error().message().find(dir + "/" + name), std::string::npos);
    std::filesystem::remove(dir + "/" + name);
  }
  // A directory named like a key is not a key file.
  std::filesystem::create_directory(dir + "/7");
  Status st = repo->reload();
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message().find("not a regular file"), std::string::npos);
}

TEST(KeyRepositoryTest, KeyFilesWrittenByHandMayEndWithANewline) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  std::filesystem::create_directory(dir);
  const FernetKey a = FernetKey::generate(), b = FernetKey::generate();
  write_file(dir + "/0", a.to_base64() + "\n");
  write_file(dir + "/1", b.to_base64() + "\r\n");
  auto repo = open_repo(dir, 3);
  ASSERT_TRUE(repo);
  EXPECT_EQ(repo->primary().to_base64(), b.to_base64());
  EXPECT_EQ(repo->keys()[1].to_base64(), a.to_base64());
}

TEST(KeyRepositoryTest, ReloadSeesAnotherProcesssRotation) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  auto mine = open_repo(dir, 3);
  auto theirs = open_repo(dir, 3);
  ASSERT_TRUE(mine && theirs);
  ASSERT_TRUE(theirs->rotate().has_value());
  ASSERT_TRUE(theirs->rotate().has_value());
  EXPECT_EQ(mine->indices(), (std::vector<int>{0, 1}));  // not until reload
  ASSERT_TRUE(mine->reload().has_value());
  EXPECT_EQ(mine->indices(), (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(mine->primary().to_base64(), theirs->primary().to_base64());
  // And rotate works from the folder's content, not from stale memory.
  ASSERT_TRUE(theirs->rotate().has_value());
  ASSERT_TRUE(mine->rotate().has_value());
  EXPECT_EQ(mine->indices(), (std::vector<int>{0, 4, 5}));
}

TEST(KeyRepositoryTest, EmptiedFolderKeepsKeysInUse) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  auto repo = open_repo(dir, 3);
  ASSERT_TRUE(repo);
  const std::string primary = repo->primary().to_base64();
  std::filesystem::remove(dir + "/0");
  std::filesystem::remove(dir + "/1");
  Status st = repo->reload();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(repo->primary().to_base64(), primary);
}

TEST(KeyRepositoryTest, RotateWithoutStagedKeyFailsCleanly) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  ASSERT_TRUE(open_repo(dir, 3));
  std::filesystem::remove(dir + "/0");
  auto repo = open_repo(dir, 3);  // loads: a primary alone still validates its tokens
  ASSERT_TRUE(repo);
  EXPECT_EQ(repo->indices(), (std::vector<int>{1}));
  Status st = repo->rotate();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(st.error().message().find("no staged key"), std::string::npos);
  EXPECT_EQ(repo->indices(), (std::vector<int>{1}));
}

// What a crash between the link and the rename of a rotation leaves: 0 and max+1 hold the
// same key. It loads, serves, and the next rotation repairs it.
TEST(KeyRepositoryTest, InterruptedRotationStateIsUsable) {
  TempDir tmp;
  const std::string dir = tmp.sub("keys");
  ASSERT_TRUE(open_repo(dir, 3));
  ASSERT_EQ(::link((dir + "/0").c_str(), (dir + "/2").c_str()), 0);
  write_file(dir + "/.tmp-0123456789abcdef", "half a key");
  auto repo = open_repo(dir, 3);
  ASSERT_TRUE(repo);
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(std::filesystem::exists(dir + "/.tmp-0123456789abcdef"));  // swept
  ASSERT_TRUE(repo->rotate().has_value());
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 2, 3}));
  EXPECT_NE(key_text(dir, 0), key_text(dir, 3));
}

TEST(KeyRepositoryTest, ReadersRunWhileRotating) {
  TempDir tmp;
  auto repo = open_repo(tmp.sub("keys"), 4);
  ASSERT_TRUE(repo);
  std::atomic<bool> stop = false;
  std::atomic<long> reads = 0;
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        auto keys = repo->snapshot();
        if (keys->size() < 2 || keys->front().signing.size() != 16) std::abort();
        ++reads;
      }
    });
  }
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(repo->rotate().has_value());
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(repo->indices(), (std::vector<int>{0, 19, 20, 21}));
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace concord::identity
