#include "blob/blob_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace concord::blob {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "concord-blob-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count_files(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

std::unique_ptr<BlobStore> make_store(const std::string& root) {
  auto s = BlobStore::create(root);
  EXPECT_TRUE(s.has_value()) << s.error().to_string();
  return s ? std::move(*s) : nullptr;
}

Result<BlobInfo> put(BlobStore& store, std::string_view data) {
  CONCORD_ASSIGN_OR_RETURN(auto w, store.begin_write());
  CONCORD_RETURN_IF_ERROR(w->write(data));
  return w->commit();
}

TEST(BlobStoreTest, CommitComputesKnownDigests) {
  TempDir dir;
  auto store = make_store(dir.path() + "/blobs");
  auto w = store->begin_write();
  ASSERT_TRUE(w.has_value());
  // Written in two pieces: the digests must cover the concatenation.
  ASSERT_TRUE((*w)->write("a").has_value());
  ASSERT_TRUE((*w)->write("bc").has_value());
  EXPECT_EQ((*w)->size(), 3u);
  auto info = (*w)->commit();
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  EXPECT_EQ(info->sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(info->md5, "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(
      info->sha512,
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c2"
      "3a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(info->size, 3u);
  std::string path = store->path_of(info->sha256);
  EXPECT_EQ(path, dir.path() + "/blobs/sha256/ba/78/" + info->sha256);
  EXPECT_EQ(read_all(path), "abc");
  EXPECT_TRUE(store->contains(info->sha256));
  // Nothing is left in tmp after a commit.
  EXPECT_EQ(count_files(dir.path() + "/blobs/tmp"), 0u);
}

TEST(BlobStoreTest, EmptyBlob) {
  TempDir dir;
  auto store = make_store(dir.path());
  auto info = put(*store, "");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(info->md5, "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(info->size, 0u);
}

TEST(BlobStoreTest, SameContentIsStoredOnce) {
  TempDir dir;
  auto store = make_store(dir.path());
  auto a = put(*store, "same bytes");
  auto b = put(*store, "same bytes");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->sha256, b->sha256);
  EXPECT_EQ(count_files(dir.path() + "/sha256"), 1u);
}

TEST(BlobStoreTest, OpenReadsContentAndMissingIsNotFound) {
  TempDir dir;
  auto store = make_store(dir.path());
  std::string data(300000, 'x');
  data[12345] = 'y';
  auto info = put(*store, data);
  ASSERT_TRUE(info.has_value());
  auto r = store->open(info->sha256);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)->size(), data.size());
  std::string got;
  char buf[4096];
  while (true) {
    auto n = (*r)->read(buf, sizeof(buf));
    ASSERT_TRUE(n.has_value());
    if (*n == 0) break;
    got.append(buf, *n);
  }
  EXPECT_EQ(got, data);

  auto missing = store->open(std::string(64, 'a'));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  auto bad = store->open("../../etc/passwd");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(store->path_of("ABC"), "");
}

TEST(BlobStoreTest, LimitStopsTheWriter) {
  TempDir dir;
  auto store = make_store(dir.path());
  auto w = store->begin_write(5);
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE((*w)->write("12345").has_value());
  auto over = (*w)->write("6");
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code(), Code::kResourceExhausted);
  auto commit = (*w)->commit();
  ASSERT_FALSE(commit.has_value());
  EXPECT_EQ(commit.error().code(), Code::kFailedPrecondition);
  w->reset();
  EXPECT_EQ(count_files(dir.path() + "/tmp"), 0u);
  EXPECT_EQ(count_files(dir.path() + "/sha256"), 0u);
}

TEST(BlobStoreTest, AbandonedWriterRemovesItsTempFile) {
  TempDir dir;
  auto store = make_store(dir.path());
  {
    auto w = store->begin_write();
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE((*w)->write("partial").has_value());
    EXPECT_TRUE(fs::exists((*w)->temp_path()));
    EXPECT_EQ(read_all((*w)->temp_path()), "partial");
  }
  EXPECT_EQ(count_files(dir.path() + "/tmp"), 0u);
}

TEST(BlobStoreTest, CreateRemovesTempFilesLeftByACrash) {
  TempDir dir;
  {
    auto store = make_store(dir.path());
    ASSERT_TRUE(put(*store, "kept").has_value());
  }
  // What a kill -9 in the middle of a write leaves behind.
  std::ofstream(dir.path() + "/tmp/deadbeef") << "half a blob";
  auto store = make_store(dir.path());
  EXPECT_EQ(count_files(dir.path() + "/tmp"), 0u);
  EXPECT_EQ(count_files(dir.path() + "/sha256"), 1u);
}

TEST(BlobStoreTest, WriteFileAppendsAFile) {
  TempDir dir;
  auto store = make_store(dir.path() + "/b");
  std::string src = dir.path() + "/src";
  std::ofstream(src, std::ios::binary) << "from a file";
  auto w = store->begin_write();
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE((*w)->write("<").has_value());
  ASSERT_TRUE((*w)->write_file(src).has_value());
  auto info = (*w)->commit();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(read_all(store->path_of(info->sha256)), "<from a file");
  auto w2 = store->begin_write();
  ASSERT_TRUE(w2.has_value());
  auto missing = (*w2)->write_file(dir.path() + "/nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kInternal);
}

TEST(BlobStoreTest, AdoptMovesAFileInAndDigestsIt) {
  TempDir dir;
  auto store = make_store(dir.path() + "/b");
  std::string src = dir.path() + "/b/tmp/spooled";
  std::ofstream(src, std::ios::binary) << "ab";
  auto w = store->adopt(src, 10);
  ASSERT_TRUE(w.has_value()) << w.error().to_string();
  EXPECT_FALSE(fs::exists(src));  // moved, not copied
  EXPECT_EQ((*w)->size(), 2u);
  ASSERT_TRUE((*w)->write("c").has_value());
  auto info = (*w)->commit();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(info->size, 3u);
  EXPECT_EQ(read_all(store->path_of(info->sha256)), "abc");

  std::ofstream(src, std::ios::binary) << std::string(11, 'x');
  auto big = store->adopt(src, 10);
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().code(), Code::kResourceExhausted);
  EXPECT_FALSE(fs::exists(src));
  auto missing = store->adopt(dir.path() + "/nothing");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
}

TEST(BlobStoreTest, RemoveAndGc) {
  TempDir dir;
  auto store = make_store(dir.path());
  auto a = put(*store, "a");
  auto b = put(*store, "b");
  auto c = put(*store, "c");
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(store->remove(a->sha256).has_value());
  EXPECT_FALSE(store->contains(a->sha256));
  // Removing twice is fine.
  EXPECT_TRUE(store->remove(a->sha256).has_value());
  auto removed = store->gc({b->sha256});
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(*removed, 1u);
  EXPECT_TRUE(store->contains(b->sha256));
  EXPECT_FALSE(store->contains(c->sha256));
  auto bad = store->remove("zz");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
}

TEST(BlobStoreTest, RelativeRootIsRejected) {
  auto s = BlobStore::create("relative/dir");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace concord::blob
