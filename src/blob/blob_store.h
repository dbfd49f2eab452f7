#pragma once
// A content-addressed blob store on the local disk, shared infrastructure for every capability
// that keeps large opaque bytes (image data, database backups, AI models).
//
// Layout under the root directory:
//   tmp/<random>                 a write in progress (removed by create(): a crash leaves only
//   these) sha256/ab/cd/<64 hex chars>  committed content, named by its SHA-256
//
// A writer streams bytes to a temp file while computing SHA-256, MD5 and SHA-512 and the size;
// commit() fsyncs the file, renames it to its content address and fsyncs the directory, so a
// committed blob survives a crash and a kill -9 at any moment leaves either the complete blob
// or a temp file. Identical content committed twice ends in one file (deduplication).
//
// The store keeps no reference counts: callers record which blobs they use in their own tables
// (in the state store) and call remove() when the last reference goes, or gc() with the set of
// referenced blobs (e.g. at start-up, to drop blobs whose owners were deleted mid-crash).
//
// Thread safety: a BlobStore may be shared by threads; a BlobWriter belongs to one thread.
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "base/result.h"

namespace concord::blob {

struct BlobInfo {
  std::string sha256;  // lowercase hex; the blob's key
  std::string md5;     // lowercase hex
  std::string sha512;  // lowercase hex
  uint64_t size = 0;
};

// One write in progress. Destroying a writer that was not committed removes its temp file.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends bytes. kResourceExhausted once more than the writer's max_bytes were written (the
  // writer is then unusable); kInternal on a disk error (message names the file and errno).
  [[nodiscard]] Status write(std::string_view data);
  // Appends the whole content of a file (e.g. a request body the HTTP server spooled to disk).
  [[nodiscard]] Status write_file(const std::string& path);
  uint64_t size() const { return size_; }
  // The temp file holding what was written so far, for inspection before commit().
  const std::string& temp_path() const { return temp_path_; }

  // fsyncs and moves the content to its address. Afterwards the writer is spent.
  [[nodiscard]] Result<BlobInfo> commit();

 private:
  friend class BlobStore;
  struct Hashes;
  BlobWriter(std::string root, std::string temp_path, int fd, uint64_t max_bytes);
  void abort();
  // Digests the bytes already in the temp file (after adopt()).
  Status absorb_existing();

  std::string root_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t max_bytes_;
  uint64_t size_ = 0;
  bool failed_ = false;
  std::unique_ptr<Hashes> hashes_;
};

// Sequential reader of a committed blob.
class BlobReader {
 public:
  ~BlobReader();
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;
  // Reads up to `capacity` bytes into `buf`; 0 at the end. kInternal on an I/O error.
  [[nodiscard]] Result<size_t> read(char* buf, size_t capacity);
  uint64_t size() const { return size_; }

 private:
  friend class BlobStore;
  BlobReader(int fd, uint64_t size) : fd_(fd), size_(size) {}
  int fd_;
  uint64_t size_;
};

class BlobStore {
 public:
  // Creates root/tmp and root/sha256 if needed and removes leftover temp files.
  // kInvalidArgument for an empty or relative root; kInternal when the folders cannot be made.
  [[nodiscard]] static Result<std::unique_ptr<BlobStore>> create(std::string root_dir);

  const std::string& root() const { return root_; }

  // max_bytes bounds the blob's size (kResourceExhausted from write() beyond it).
  [[nodiscard]] Result<std::unique_ptr<BlobWriter>> begin_write(
      uint64_t max_bytes = UINT64_MAX) const;
  // Starts a write whose content so far is the file at `path` (e.g. a request body the HTTP
  // server spooled), taking the file over: on the same file system it is moved, not copied,
  // and read once for the digests. kResourceExhausted if it already exceeds max_bytes (the file
  // is then removed); kNotFound if it does not exist.
  [[nodiscard]] Result<std::unique_ptr<BlobWriter>> adopt(const std::string& path,
                                                          uint64_t max_bytes = UINT64_MAX) const;

  // The file of a blob (whether or not it exists); "" for a malformed key.
  std::string path_of(std::string_view sha256) const;
  bool contains(std::string_view sha256) const;
  // kNotFound if absent, kInvalidArgument for a malformed key.
  [[nodiscard]] Result<std::unique_ptr<BlobReader>> open(std::string_view sha256) const;
  // Removes a blob; ok if it was already absent. kInvalidArgument for a malformed key.
  [[nodiscard]] Status remove(std::string_view sha256) const;
  // Removes every committed blob not in `referenced`; returns how many were removed.
  [[nodiscard]] Result<size_t> gc(const std::set<std::string>& referenced) const;

  // True for 64 lowercase hex characters.
  static bool valid_key(std::string_view sha256);

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

}  // namespace concord::blob
