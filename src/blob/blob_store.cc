#include "blob/blob_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <system_error>

#include "base/encoding.h"
#include "base/log.h"
#include "base/random.h"

namespace concord::blob {
namespace fs = std::filesystem;

namespace {

std::unexpected<Error> io_error(std::string_view what, const std::string& path, int err) {
  return fail(Code::kInternal, std::string(what) + " " + path + ": " + std::strerror(err));
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return io_error("fsync directory", dir, err);
  return ok();
}

Status make_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(Code::kInternal, "create directory " + dir + ": " + ec.message());
  return ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// BlobWriter

struct BlobWriter::Hashes {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> sha256{EVP_MD_CTX_new()};
  std::unique_ptr<EVP_MD_CTX, Free> md5{EVP_MD_CTX_new()};
  std::unique_ptr<EVP_MD_CTX, Free> sha512{EVP_MD_CTX_new()};
  bool init() {
    return sha256 && md5 && sha512 && EVP_DigestInit_ex(sha256.get(), EVP_sha256(), nullptr) == 1 &&
           EVP_DigestInit_ex(md5.get(), EVP_md5(), nullptr) == 1 &&
           EVP_DigestInit_ex(sha512.get(), EVP_sha512(), nullptr) == 1;
  }
  bool update(std::string_view d) {
    return EVP_DigestUpdate(sha256.get(), d.data(), d.size()) == 1 &&
           EVP_DigestUpdate(md5.get(), d.data(), d.size()) == 1 &&
           EVP_DigestUpdate(sha512.get(), d.data(), d.size()) == 1;
  }
  static std::string final_hex(EVP_MD_CTX* c) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(c, out, &n) != 1) return {};
    return hex_encode(std::string_view(reinterpret_cast<const char*>(out), n));
  }
};

BlobWriter::BlobWriter(std::string root, std::string temp_path, int fd, uint64_t max_bytes)
    : root_(std::move(root)),
      temp_path_(std::move(temp_path)),
      fd_(fd),
      max_bytes_(max_bytes),
      hashes_(std::make_unique<Hashes>()) {
  if (!hashes_->init()) failed_ = true;
}

BlobWriter::~BlobWriter() {
  abort();
}

void BlobWriter::abort() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
  }
}

Status BlobWriter::write(std::string_view data) {
  if (fd_ < 0 || failed_) return fail(Code::kFailedPrecondition, "blob writer is not usable");
  if (data.size() > max_bytes_ - size_) {
    failed_ = true;
    return fail(Code::kResourceExhausted,
                "blob exceeds the limit of " + std::to_string(max_bytes_) + " bytes");
  }
  if (!hashes_->update(data)) {
    failed_ = true;
    return fail(Code::kInternal, "digest update failed");
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_ = true;
      return io_error("write", temp_path_, errno);
    }
    done += static_cast<size_t>(n);
  }
  size_ += data.size();
  return ok();
}

Status BlobWriter::write_file(const std::string& path) {
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return io_error("open", path, errno);
  std::string buf(1 << 20, '\0');
  Status st = ok();
  while (st) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      st = io_error("read", path, errno);
      break;
    }
    if (n == 0) break;
    st = write(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(in);
  return st;
}

Status BlobWriter::absorb_existing() {
  std::string buf(1 << 20, '\0');
  while (true) {
    ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      failed_ = true;
      return io_error("read", temp_path_, errno);
    }
    if (n == 0) break;
    if (!hashes_->update(std::string_view(buf.data(), static_cast<size_t>(n)))) {
      failed_ = true;
      return fail(Code::kInternal, "digest update failed");
    }
    size_ += static_cast<uint64_t>(n);
  }
  // The descriptor now sits at the end, so later write() calls append.
  return ok();
}

Result<BlobInfo> BlobWriter::commit() {
  if (fd_ < 0 || failed_) return fail(Code::kFailedPrecondition, "blob writer is not usable");
  BlobInfo info;
  info.sha256 = Hashes::final_hex(hashes_->sha256.get());
  info.md5 = Hashes::final_hex(hashes_->md5.get());
  info.sha512 = Hashes::final_hex(hashes_->sha512.get());
  info.size = size_;
  if (info.sha256.size() != 64 || info.md5.size() != 32 || info.sha512.size() != 128) {
    failed_ = true;
    return fail(Code::kInternal, "digest finalisation failed");
  }
  if (::fsync(fd_) != 0) {
    failed_ = true;
    return io_error("fsync", temp_path_, errno);
  }
  ::close(fd_);
  fd_ = -1;
  std::string dir = root_ + "/sha256/" + info.sha256.substr(0, 2) + "/" + info.sha256.substr(2, 2);
  CONCORD_RETURN_IF_ERROR(make_dir(dir));
  std::string target = dir + "/" + info.sha256;
  // Renaming over an existing blob of the same content is harmless and keeps this one step;
  // it also repairs a blob file that was truncated by hand.
  if (::rename(temp_path_.c_str(), target.c_str()) != 0) {
    return io_error("rename to", target, errno);
  }
  temp_path_.clear();
  CONCORD_RETURN_IF_ERROR(fsync_dir(dir));
  return info;
}

// ---------------------------------------------------------------------------------------------
// BlobReader

BlobReader::~BlobReader() {
  if (fd_ >= 0) ::close(fd_);
}

Result<size_t> BlobReader::read(char* buf, size_t capacity) {
  while (true) {
    ssize_t n = ::read(fd_, buf, capacity);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR)
      return fail(Code::kInternal, std::string("read blob: ") + std::strerror(errno));
  }
}

// ---------------------------------------------------------------------------------------------
// BlobStore

Result<std::unique_ptr<BlobStore>> BlobStore::create(std::string root_dir) {
  while (root_dir.size() > 1 && root_dir.back() == '/') root_dir.pop_back();
  if (root_dir.empty() || root_dir.front() != '/') {
    return fail(Code::kInvalidArgument,
                "blob store root must be an absolute path, got '" + root_dir + "'");
  }
  CONCORD_RETURN_IF_ERROR(make_dir(root_dir + "/tmp"));
  CONCORD_RETURN_IF_ERROR(make_dir(root_dir + "/sha256"));
  // Whatever is in tmp/ was being written when the process died: never committed, so garbage.
  std::error_code ec;
  size_t removed = 0;
  for (const auto& entry : fs::directory_iterator(root_dir + "/tmp", ec)) {
    std::error_code rm_ec;
    if (fs::remove_all(entry.path(), rm_ec) > 0) ++removed;
  }
  if (ec) return fail(Code::kInternal, "list " + root_dir + "/tmp: " + ec.message());
  if (removed > 0) {
    logger("blob")->info("removed {} unfinished blob writes root={}", removed, root_dir);
  }
  return std::unique_ptr<BlobStore>(new BlobStore(std::move(root_dir)));
}

Result<std::unique_ptr<BlobWriter>> BlobStore::begin_write(uint64_t max_bytes) const {
  std::string path = root_ + "/tmp/" + new_hex_id();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create", path, errno);
  std::unique_ptr<BlobWriter> w(new BlobWriter(root_, std::move(path), fd, max_bytes));
  if (w->failed_) return fail(Code::kInternal, "cannot initialise digests");
  return w;
}

Result<std::unique_ptr<BlobWriter>> BlobStore::adopt(const std::string& path,
                                                     uint64_t max_bytes) const {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return fail(Code::kNotFound, "no file " + path);
    return io_error("stat", path, errno);
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::unlink(path.c_str());
    return fail(Code::kResourceExhausted,
                "blob exceeds the limit of " + std::to_string(max_bytes) + " bytes");
  }
  std::string temp = root_ + "/tmp/" + new_hex_id();
  if (::rename(path.c_str(), temp.c_str()) != 0) {
    if (errno != EXDEV) return io_error("move into blob store", path, errno);
    // Another file system: copy.
    CONCORD_ASSIGN_OR_RETURN(auto w, begin_write(max_bytes));
    CONCORD_RETURN_IF_ERROR(w->write_file(path));
    ::unlink(path.c_str());
    return w;
  }
  int fd = ::open(temp.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return io_error("open", temp, err);
  }
  std::unique_ptr<BlobWriter> w(new BlobWriter(root_, std::move(temp), fd, max_bytes));
  if (w->failed_) return fail(Code::kInternal, "cannot initialise digests");
  CONCORD_RETURN_IF_ERROR(w->absorb_existing());
  return w;
}

bool BlobStore::valid_key(std::string_view sha256) {
  if (sha256.size() != 64) return false;
  for (char c : sha256) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string BlobStore::path_of(std::string_view sha256) const {
  if (!valid_key(sha256)) return {};
  std::string key(sha256);
  return root_ + "/sha256/" + key.substr(0, 2) + "/" + key.substr(2, 2) + "/" + key;
}

bool BlobStore::contains(std::string_view sha256) const {
  std::string p = path_of(sha256);
  struct stat st;
  return !p.empty() && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<std::unique_ptr<BlobReader>> BlobStore::open(std::string_view sha256) const {
  std::string p = path_of(sha256);
  if (p.empty()) return fail(Code::kInvalidArgument, "malformed blob key");
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return fail(Code::kNotFound, "no blob " + std::string(sha256));
    return io_error("open", p, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return io_error("stat", p, err);
  }
  return std::unique_ptr<BlobReader>(new BlobReader(fd, static_cast<uint64_t>(st.st_size)));
}

Status BlobStore::remove(std::string_view sha256) const {
  std::string p = path_of(sha256);
  if (p.empty()) return fail(Code::kInvalidArgument, "malformed blob key");
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) return io_error("remove", p, errno);
  return ok();
}

Result<size_t> BlobStore::gc(const std::set<std::string>& referenced) const {
  size_t removed = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root_ + "/sha256", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string name = it->path().filename().string();
    if (referenced.contains(name)) continue;
    std::error_code rm_ec;
    if (fs::remove(it->path(), rm_ec)) ++removed;
    if (rm_ec)
      return fail(Code::kInternal, "remove " + it->path().string() + ": " + rm_ec.message());
  }
  if (ec) return fail(Code::kInternal, "scan " + root_ + "/sha256: " + ec.message());
  return removed;
}

}  // namespace concord::blob
