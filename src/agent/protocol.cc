#include "agent/protocol.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/random.h"

namespace concord::agent {
namespace {

ImageRef image_ref(const Json& j) {
  ImageRef r;
  r.id = j.value("id", std::string());
  r.sha256 = j.value("sha256", std::string());
  r.disk_format = j.value("disk_format", std::string());
  r.container_format = j.value("container_format", std::string());
  r.size = j.value("size", int64_t{0});
  return r;
}

}  // namespace

Result<Spec> parse_spec(const Json& j) {
  if (!j.is_object()) return fail(Code::kInvalidArgument, "instance spec is not an object");
  Spec s;
  try {
    s.id = j.at("id").get<std::string>();
    s.revision = j.value("revision", int64_t{0});
    s.generation = j.value("generation", int64_t{0});
    s.name = j.value("name", std::string());
    s.hostname = j.value("hostname", std::string());
    s.driver = j.value("driver", std::string());
    if (auto f = j.find("flavor"); f != j.end() && f->is_object()) {
      s.vcpus = f->value("vcpus", int64_t{1});
      s.ram_mb = f->value("ram_mb", int64_t{64});
      s.disk_gb = f->value("disk_gb", int64_t{1});
    }
    if (auto i = j.find("image"); i != j.end() && i->is_object()) {
      s.image = image_ref(*i);
      if (auto k = i->find("kernel_id"); k != i->end() && k->is_string()) {
        s.kernel.id = k->get<std::string>();
        s.kernel.sha256 = i->value("kernel_sha256", std::string());
      }
      if (auto k = i->find("ramdisk_id"); k != i->end() && k->is_string()) {
        s.ramdisk.id = k->get<std::string>();
        s.ramdisk.sha256 = i->value("ramdisk_sha256", std::string());
      }
    }
    s.network = j.value("network", std::string("none"));
    s.desired_power = j.value("desired_power", std::string("running"));
    s.reboot_seq = j.value("reboot_seq", int64_t{0});
    s.reboot_hard = j.value("reboot_hard", false);
    s.rebuild_seq = j.value("rebuild_seq", int64_t{0});
    s.deleted = j.value("deleted", false);
    s.config_drive = j.value("config_drive", false);
    if (auto g = j.find("guest"); g != j.end() && g->is_object()) {
      s.user_data_b64 = g->value("user_data", std::string());
      s.meta_data_json = g->value("meta_data_json", std::string("{}"));
      s.network_data_json = g->value("network_data_json", std::string("{}"));
    }
  } catch (const Json::exception& e) {
    return fail(Code::kInvalidArgument, std::string("malformed instance spec: ") + e.what());
  }
  if (s.id.empty()) return fail(Code::kInvalidArgument, "instance spec without id");
  return s;
}

std::string to_json(const Applied& a) {
  Json j = {{"driver", a.driver},
            {"generation", a.generation},
            {"reboot_seq", a.reboot_seq},
            {"rebuild_seq", a.rebuild_seq},
            {"vcpus", a.vcpus},
            {"ram_mb", a.ram_mb},
            {"disk_gb", a.disk_gb},
            {"image_sha256", a.image_sha256},
            {"meta_digest", a.meta_digest}};
  return dump_json(j);
}

Result<Applied> applied_from_json(std::string_view text) {
  CONCORD_ASSIGN_OR_RETURN(Json j, parse_json(text));
  if (!j.is_object()) return fail(Code::kInvalidArgument, "applied state is not an object");
  Applied a;
  try {
    a.driver = j.value("driver", std::string());
    a.generation = j.value("generation", int64_t{0});
    a.reboot_seq = j.value("reboot_seq", int64_t{0});
    a.rebuild_seq = j.value("rebuild_seq", int64_t{0});
    a.vcpus = j.value("vcpus", int64_t{0});
    a.ram_mb = j.value("ram_mb", int64_t{0});
    a.disk_gb = j.value("disk_gb", int64_t{0});
    a.image_sha256 = j.value("image_sha256", std::string());
    a.meta_digest = j.value("meta_digest", std::string());
  } catch (const Json::exception& e) {
    return fail(Code::kInvalidArgument, std::string("malformed applied state: ") + e.what());
  }
  return a;
}

Result<std::string> base64_decode_standard(std::string_view text) {
  std::string url;
  url.reserve(text.size());
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    if (c == '+') {
      url.push_back('-');
    } else if (c == '/') {
      url.push_back('_');
    } else if (c == '-' || c == '_') {
      return fail(Code::kInvalidArgument, "user_data is not standard base64");
    } else {
      url.push_back(c);
    }
  }
  std::optional<std::string> out = base64url_decode(url);
  if (!out) return fail(Code::kInvalidArgument, "user_data is not valid base64");
  return *out;
}

std::string image_kind(const ImageRef& image) {
  if (image.container_format == "docker") return "rootfs-tar";
  return image.disk_format;
}

Status write_file_atomic(const std::string& path, std::string_view content) {
  const std::string tmp = path + ".tmp-" + random_token(6);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(Code::kFailedPrecondition, "cannot create " + tmp + ": " + std::strerror(errno));
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail(Code::kFailedPrecondition, "cannot write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(Code::kFailedPrecondition, "cannot sync " + tmp + ": " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(Code::kFailedPrecondition, "cannot rename " + tmp + ": " + std::strerror(err));
  }
  return ok();
}

Result<std::string> sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Code::kNotFound, "cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return fail(Code::kInternal, "sha256 init failed");
  }
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n)) != 1) {
      return fail(Code::kInternal, "sha256 update failed");
    }
  }
  if (in.bad()) return fail(Code::kFailedPrecondition, "read error on " + path);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) return fail(Code::kInternal, "sha256 final");
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

Json addresses_json(const std::vector<compute::driver::Address>& addresses) {
  Json out = Json::array();
  for (const auto& a : addresses) {
    out.push_back({{"network", a.network},
                   {"addr", a.addr},
                   {"version", a.version},
                   {"mac", a.mac},
                   {"type", a.type}});
  }
  return out;
}

std::string meta_digest(std::string_view meta_data_json) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(meta_data_json.data(), meta_data_json.size(), md, &len, EVP_sha256(), nullptr) !=
      1) {
    return "unhashable";  // never equal to a real digest: configure runs again
  }
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

}  // namespace concord::agent
