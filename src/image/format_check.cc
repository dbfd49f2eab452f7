#include "image/format_check.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/json.h"
#include "base/log.h"

namespace concord::image {
namespace {

constexpr size_t kHeadBytes = 64 * 1024;

uint64_t be64(std::string_view s, size_t off) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[off + i]);
  return v;
}

bool at(std::string_view s, size_t off, std::string_view magic) {
  return s.size() >= off + magic.size() && s.substr(off, magic.size()) == magic;
}

Result<std::string> read_range(const std::string& path, uint64_t offset, size_t n) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(Code::kInternal, "open " + path + ": " + std::strerror(errno));
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      ::close(fd);
      return fail(Code::kInternal, "read " + path + ": " + std::strerror(err));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

// The first bytes of a gzip stream, decompressed (at most `want`).
std::optional<std::string> gunzip_prefix(std::string_view gz, size_t want) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return std::nullopt;
  std::string out(want, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(gz.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(want);
  int rc = Z_OK;
  while (zs.avail_out > 0 && rc == Z_OK) rc = inflate(&zs, Z_NO_FLUSH);
  size_t produced = want - zs.avail_out;
  inflateEnd(&zs);
  if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return std::nullopt;
  out.resize(produced);
  return out;
}

bool is_tar(std::string_view block) {
  return at(block, 257, "ustar");
}

std::unexpected<Error> mismatch(std::string_view claimed, std::string_view detail) {
  return fail(Code::kInvalidArgument, "Image data does not match disk_format " +
                                          std::string(claimed) + ": " + std::string(detail));
}

// qemu-img's name for a Glance disk_format.
std::string_view qemu_format(std::string_view disk_format) {
  if (disk_format == "vhd") return "vpc";
  return disk_format;
}

std::string find_binary(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

}  // namespace

std::string sniff_format(std::string_view head) {
  if (at(head, 0, "QFI\xfb")) return "qcow2";
  if (at(head, 0, "KDMV")) return "vmdk";
  // A descriptor-only VMDK names extent files by path: refused like backing files.
  if (at(head, 0, "# Disk DescriptorFile")) return "vmdk-descriptor";
  if (at(head, 0, "vhdxfile")) return "vhdx";
  if (at(head, 0x40, std::string_view("\x7f\x10\xda\xbe", 4))) return "vdi";
  if (at(head, 0, "conectix")) return "vhd";
  if (at(head, 0x8001, "CD001")) return "iso";
  if (at(head, 0, "\x1f\x8b")) return "gzip";
  if (is_tar(head)) return "tar";
  return {};
}

Result<std::string> qemu_img_info(const std::string& path, std::string_view format,
                                  const QemuImgOptions& qemu) {
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe
  // calls are made.
  std::string binary = find_binary(qemu.binary);
  if (binary.empty()) return fail(Code::kUnavailable, "qemu-img not found: " + qemu.binary);
  std::vector<std::string> args = {binary, "info", "--output=json", "-f", std::string(format),
                                   path};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};

  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    return fail(Code::kUnavailable, std::string("pipe: ") + std::strerror(errno));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return fail(Code::kUnavailable, std::string("fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    struct rlimit as {
      qemu.max_address_space, qemu.max_address_space
    };
    ::setrlimit(RLIMIT_AS, &as);
    rlim_t cpu = static_cast<rlim_t>(qemu.max_cpu_seconds);
    struct rlimit cpu_limit {
      cpu, cpu
    };
    ::setrlimit(RLIMIT_CPU, &cpu_limit);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(out_pipe[1], STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::execve(argv[0], argv.data(), envp);
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  std::string output;
  auto deadline = std::chrono::steady_clock::now() + qemu.timeout;
  bool timed_out = false;
  char buf[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd pfd {
      out_pipe[0], POLLIN, 0
    };
    int pr = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      timed_out = pr == 0;
      break;
    }
    ssize_t n = ::read(out_pipe[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < (1 << 20)) output.append(buf, static_cast<size_t>(n));
  }
  ::close(out_pipe[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return fail(Code::kUnavailable,
                "qemu-img info timed out after " + std::to_string(qemu.timeout.count()) + " ms");
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127) {
    return fail(Code::kUnavailable, "cannot run " + binary);
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    // qemu-img refused the file (its message says why; it is about the client's data).
    while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
    return fail(Code::kInvalidArgument, "qemu-img cannot read the data as " + std::string(format) +
                                            ": " + sanitize_utf8(output.substr(0, 300)));
  }
  return output;
}

Result<FormatReport> verify_format(const std::string& path, uint64_t size,
                                   std::string_view disk_format, std::string_view container_format,
                                   const QemuImgOptions& qemu) {
  CONCORD_ASSIGN_OR_RETURN(std::string head, read_range(path, 0, kHeadBytes));
  std::string seen = sniff_format(head);
  FormatReport report;

  if (container_format == "docker") {
    // A container root filesystem: a tar archive, possibly gzip-compressed.
    if (disk_format != "raw") {
      return fail(Code::kInvalidArgument,
                  "container_format docker requires disk_format raw (a root filesystem tarball)");
    }
    std::string first = head;
    if (seen == "gzip") {
      auto plain = gunzip_prefix(head, 1024);
      if (!plain) return fail(Code::kInvalidArgument, "Image data is not a valid gzip stream");
      first = std::move(*plain);
    }
    if (!is_tar(first)) {
      return fail(Code::kInvalidArgument,
                  "Image data for container_format docker is not a tar archive");
    }
    return report;
  }
  // Kernel and ramdisk images are opaque blobs by nature.
  if (disk_format == "aki" || disk_format == "ari" || disk_format == "ami") return report;

  if (seen == "vmdk-descriptor") {
    return mismatch(disk_format, "VMDK descriptor files naming external extents are refused");
  }
  static constexpr std::string_view kStructured[] = {"qcow2", "vmdk", "vhdx", "vdi"};
  bool structured_content =
      std::find(std::begin(kStructured), std::end(kStructured), seen) != std::end(kStructured);
  if (structured_content && seen != disk_format) {
    return mismatch(disk_format, "the data is a " + seen + " image");
  }
  if (disk_format == "raw" || disk_format == "ploop") {
    report.virtual_size = static_cast<int64_t>(size);
    return report;
  }
  if (disk_format == "iso") {
    if (seen != "iso") return mismatch(disk_format, "no ISO 9660 signature");
    report.virtual_size = static_cast<int64_t>(size);
    return report;
  }
  if (disk_format == "vhd") {
    // A VHD carries its footer at the end (and a copy at the start when dynamic).
    if (seen != "vhd") {
      std::string tail;
      if (size >= 512) {
        CONCORD_ASSIGN_OR_RETURN(tail, read_range(path, size - 512, 512));
      }
      if (!at(tail, 0, "conectix")) return mismatch(disk_format, "no VHD footer");
    }
  } else if (seen != disk_format) {
    return mismatch(disk_format, seen.empty() ? "unrecognised data" : "the data is " + seen);
  }
  if (disk_format == "qcow2") {
    // Checked here too, so the rule holds even if qemu-img's output changes.
    if (head.size() < 32) return mismatch(disk_format, "truncated qcow2 header");
    if (be64(head, 8) != 0)
      return mismatch(disk_format, "qcow2 images with a backing file are refused");
  }
  CONCORD_ASSIGN_OR_RETURN(std::string text, qemu_img_info(path, qemu_format(disk_format), qemu));
  auto info = parse_json(text);
  if (!info || !info->is_object()) {
    return fail(Code::kUnavailable, "qemu-img info printed no JSON object");
  }
  if (info->contains("backing-filename") || info->contains("full-backing-filename")) {
    return mismatch(disk_format, "images with a backing file are refused");
  }
  const Json* specific = nullptr;
  if (auto it = info->find("format-specific"); it != info->end() && it->is_object()) {
    specific = &*it;
  }
  if (specific != nullptr && specific->contains("data") && (*specific)["data"].is_object() &&
      (*specific)["data"].contains("data-file")) {
    return mismatch(disk_format, "images with an external data file are refused");
  }
  if (disk_format == "vmdk" && specific != nullptr && specific->contains("data") &&
      (*specific)["data"].is_object()) {
    std::string create_type = (*specific)["data"].value("create-type", "");
    if (create_type != "monolithicSparse" && create_type != "streamOptimized") {
      return mismatch(disk_format, "VMDK create-type '" + create_type + "' is not allowed");
    }
  }
  if (auto it = info->find("virtual-size"); it != info->end() && it->is_number_integer()) {
    report.virtual_size = it->get<int64_t>();
  }
  return report;
}

}  // namespace concord::image
