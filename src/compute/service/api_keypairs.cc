// os-keypairs: per-user SSH (and x509) keys, generated here or imported.
//
// Keys belong to users, not projects: a caller manages their own, and an administrator may
// name another user with user_id (2.10+). Imported public keys are parsed for real (the
// OpenSSH wire format of ssh-rsa, ssh-ed25519 and ecdsa-sha2-nistp256/384/521, or a PEM
// certificate for x509), because a key a guest cannot use should fail at import, as Nova's
// does. The fingerprint is Nova's: MD5 of the key blob (SHA-1 of the DER for x509) in colon hex.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "base/encoding.h"
#include "base/random.h"
#include "base/time_format.h"
#include "compute/service/api.h"
#include "compute/service/quota.h"

namespace concord::compute {

namespace {

constexpr int64_t kMaxLimit = 1000;

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using GroupPtr = std::unique_ptr<EC_GROUP, Deleter<EC_GROUP, EC_GROUP_free>>;
using PointPtr = std::unique_ptr<EC_POINT, Deleter<EC_POINT, EC_POINT_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;

std::string b64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Strict RFC 4648 base64 (standard alphabet, padding required as OpenSSH writes it).
std::optional<std::string> b64_decode(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return std::nullopt;
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(s.size() / 4 * 3);
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      char c = s[i + j];
      if (c == '=') {
        if (i + 4 != s.size() || j < 2) return std::nullopt;
        v[j] = 0;
        ++pad;
      } else {
        if (pad > 0) return std::nullopt;
        v[j] = val(c);
        if (v[j] < 0) return std::nullopt;
      }
    }
    uint32_t triple =
        (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    out += static_cast<char>((triple >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((triple >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(triple & 0xff);
  }
  return out;
}

std::string colon_hex(const unsigned char* d, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ':';
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

std::string digest_hex(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  return colon_hex(out, len);
}

// Reads the OpenSSH wire format (RFC 4251 strings).
class WireReader {
 public:
  explicit WireReader(std::string_view d) : d_(d) {}
  bool string(std::string_view& out) {
    if (d_.size() < 4) return false;
    uint32_t len = (uint32_t(uint8_t(d_[0])) << 24) | (uint32_t(uint8_t(d_[1])) << 16) |
                   (uint32_t(uint8_t(d_[2])) << 8) | uint32_t(uint8_t(d_[3]));
    d_.remove_prefix(4);
    if (len > d_.size()) return false;
    out = d_.substr(0, len);
    d_.remove_prefix(len);
    return true;
  }
  bool done() const { return d_.empty(); }

 private:
  std::string_view d_;
};

void put_string(std::string& out, std::string_view s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  out += static_cast<char>(n >> 24);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out += s;
}

// A positive mpint: big-endian magnitude with a leading zero when the top bit is set.
std::string mpint(const BIGNUM* bn) {
  std::string bytes(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(bytes.data()));
  if (!bytes.empty() && (static_cast<unsigned char>(bytes[0]) & 0x80)) bytes.insert(0, 1, '\0');
  return bytes;
}

Status invalid_key(std::string_view reason) {
  return fail(Code::kInvalidArgument, "Keypair data is invalid: " + std::string(reason));
}

// Bit length of a positive mpint, or -1 when it is not a canonical positive value.
int mpint_bits(std::string_view m) {
  if (m.empty() || (static_cast<unsigned char>(m[0]) & 0x80)) return -1;
  while (!m.empty() && m[0] == '\0') m.remove_prefix(1);
  if (m.empty()) return 0;
  int top = 0;
  for (unsigned c = static_cast<unsigned char>(m[0]); c; c >>= 1) ++top;
  return static_cast<int>((m.size() - 1) * 8) + top;
}

Status check_ecdsa_point(int nid, std::string_view q) {
  GroupPtr group(EC_GROUP_new_by_curve_name(nid));
  if (!group) return fail(Code::kInternal, "EC group unavailable");
  PointPtr point(EC_POINT_new(group.get()));
  if (!point) return fail(Code::kInternal, "EC point allocation failed");
  if (EC_POINT_oct2point(group.get(), point.get(), reinterpret_cast<const unsigned char*>(q.data()),
                         q.size(), nullptr) != 1 ||
      EC_POINT_is_on_curve(group.get(), point.get(), nullptr) != 1)
    return invalid_key("failed to generate fingerprint");
  return ok();
}

// Validates an OpenSSH public key line ("<type> <base64> [comment]") and returns its
// fingerprint.
Result<std::string> ssh_fingerprint(std::string_view line) {
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos)
    return fail(invalid_key("failed to generate fingerprint").error());
  std::string_view type = line.substr(0, sp);
  std::string_view rest = line.substr(sp + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  std::string_view b64 = rest.substr(0, rest.find(' '));
  auto blob = b64_decode(b64);
  if (!blob) return fail(invalid_key("failed to generate fingerprint").error());
  WireReader r(*blob);
  std::string_view inner_type;
  if (!r.string(inner_type) || inner_type != type)
    return fail(invalid_key("failed to generate fingerprint").error());
  if (type == "ssh-rsa") {
    std::string_view e, n;
    if (!r.string(e) || !r.string(n) || !r.done())
      return fail(invalid_key("failed to generate fingerprint").error());
    int ebits = mpint_bits(e);
    int nbits = mpint_bits(n);
    if (ebits < 2 || ebits > 64 || (static_cast<unsigned char>(e.back()) & 1) == 0 ||
        nbits < 1024 || nbits > 16384 || (static_cast<unsigned char>(n.back()) & 1) == 0)
      return fail(invalid_key("failed to generate fingerprint").error());
  } else if (type == "ssh-ed25519") {
    std::string_view k;
    if (!r.string(k) || k.size() != 32 || !r.done())
      return fail(invalid_key("failed to generate fingerprint").error());
  } else if (type.starts_with("ecdsa-sha2-")) {
    std::string_view curve = type.substr(11);
    int nid = curve == "nistp256"   ? NID_X9_62_prime256v1
              : curve == "nistp384" ? NID_secp384r1
              : curve == "nistp521" ? NID_secp521r1
                                    : NID_undef;
    std::string_view name, q;
    if (nid == NID_undef || !r.string(name) || name != curve || !r.string(q) || !r.done())
      return fail(invalid_key("failed to generate fingerprint").error());
    CONCORD_RETURN_IF_ERROR(check_ecdsa_point(nid, q));
  } else {
    return fail(invalid_key("failed to generate fingerprint").error());
  }
  return digest_hex(EVP_md5(), *blob);
}

Result<std::string> x509_fingerprint(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return fail(Code::kInternal, "BIO allocation failed");
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return fail(invalid_key("failed to generate fingerprint").error());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert.get(), EVP_sha1(), md, &len) != 1)
    return fail(invalid_key("failed to generate fingerprint").error());
  return colon_hex(md, len);
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

struct GeneratedKey {
  std::string public_key, private_key, fingerprint;
};

Result<PkeyPtr> new_rsa_key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  if (!key) return fail(Code::kInternal, "RSA key generation failed");
  return key;
}

// An RSA 2048 key: the public half as an OpenSSH line, the private half as the PEM ("BEGIN RSA
// PRIVATE KEY") Nova returns and ssh accepts.
Result<GeneratedKey> generate_ssh_key() {
  CONCORD_ASSIGN_OR_RETURN(PkeyPtr key, new_rsa_key());
  BIGNUM* n_raw = nullptr;
  BIGNUM* e_raw = nullptr;
  if (EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_N, &n_raw) != 1 ||
      EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_E, &e_raw) != 1) {
    BN_free(n_raw);
    BN_free(e_raw);
    return fail(Code::kInternal, "reading the RSA key failed");
  }
  BnPtr n(n_raw), e(e_raw);
  std::string blob;
  put_string(blob, "ssh-rsa");
  put_string(blob, mpint(e.get()));
  put_string(blob, mpint(n.get()));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey_traditional(bio.get(), key.get(), nullptr, nullptr, 0,
                                                   nullptr, nullptr) != 1)
    return fail(Code::kInternal, "writing the private key failed");
  GeneratedKey g;
  g.public_key = "ssh-rsa " + b64_encode(blob) + " Generated-by-Nova";
  g.private_key = bio_text(bio.get());
  g.fingerprint = digest_hex(EVP_md5(), blob);
  return g;
}

// A self-signed client certificate (CN = the user id, extended key usage clientAuth, ten
// years), as Nova makes for x509 keypairs (WinRM certificate authentication).
Result<GeneratedKey> generate_x509(std::string_view user_id, SystemTime now) {
  CONCORD_ASSIGN_OR_RETURN(PkeyPtr key, new_rsa_key());
  X509Ptr cert(X509_new());
  if (!cert) return fail(Code::kInternal, "X509 allocation failed");
  std::string serial = random_bytes(8);
  BnPtr serial_bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(serial.data()), 8, nullptr));
  time_t t = std::chrono::system_clock::to_time_t(now);
  X509_NAME* name = X509_get_subject_name(cert.get());
  std::string cn(user_id);
  bool built =
      serial_bn && X509_set_version(cert.get(), 2) == 1 &&
      BN_to_ASN1_INTEGER(serial_bn.get(), X509_get_serialNumber(cert.get())) != nullptr &&
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), t) != nullptr &&
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), t + 10LL * 365 * 24 * 3600) != nullptr &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) == 1 &&
      X509_set_issuer_name(cert.get(), name) == 1 && X509_set_pubkey(cert.get(), key.get()) == 1;
  if (built) {
    ExtPtr eku(X509V3_EXT_conf_nid(nullptr, nullptr, NID_ext_key_usage, "clientAuth"));
    built = eku && X509_add_ext(cert.get(), eku.get(), -1) == 1 &&
            X509_sign(cert.get(), key.get(), EVP_sha256()) > 0;
  }
  if (!built) return fail(Code::kInternal, "building the x509 certificate failed");
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1)
    return fail(Code::kInternal, "writing the x509 keypair failed");
  GeneratedKey g;
  g.public_key = bio_text(cert_bio.get());
  g.private_key = bio_text(key_bio.get());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert.get(), EVP_sha1(), md, &len);
  g.fingerprint = colon_hex(md, len);
  return g;
}

struct KeypairRow {
  std::string user_id, name;
  int64_t id = 0;
  std::string type, public_key, fingerprint, created_at;
};

KeypairRow keypair_from_row(const store::Row& r) {
  return {r.text(0), r.text(1), r.integer(2), r.text(3), r.text(4), r.text(5), r.text(6)};
}

constexpr const char* kKeypairColumns =
    "user_id, name, id, type, public_key, fingerprint, created_at";

Status keypair_not_found(std::string_view name, std::string_view user_id) {
  return fail(Code::kNotFound,
              "Keypair " + std::string(name) + " not found for user " + std::string(user_id));
}

// The user whose keys a call acts on: the caller, or (2.10+, administrators) `user_id`.
Result<std::string> target_user(NovaApi& api, const NovaApi::Call& call,
                                const std::optional<std::string>& requested) {
  if (!requested || !call.version.at_least(10) || *requested == call.caller.user_id)
    return call.caller.user_id;
  CONCORD_RETURN_IF_ERROR(api.authorize(call, "admin", call.caller.project_id));
  return *requested;
}

// Nova's keypair name before 2.92: 1..255 of letters, digits, space, '_' and '-', not
// starting or ending with a space.
Status check_keypair_name(const Json& v) {
  auto bad = [&](std::string why) {
    return fail(Code::kInvalidArgument,
                "Invalid input for field/attribute name. Value: " + dump_json(v) + ". " + why);
  };
  if (!v.is_string()) return bad(dump_json(v) + " is not of type 'string'");
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty()) return bad("'' is too short");
  if (s.size() > 255) return bad("'" + s.substr(0, 32) + "...' is too long");
  bool chars = std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == ' ' || c == '_' || c == '-';
  });
  if (!chars || s.front() == ' ' || s.back() == ' ')
    return bad("'" + s + "' is not a 'keypair_name_20'");
  return ok();
}

Json keypair_json(const NovaApi::Call& call, const KeypairRow& k) {
  Json j = {{"name", k.name}, {"public_key", k.public_key}, {"fingerprint", k.fingerprint}};
  if (call.version.at_least(2)) j["type"] = k.type;
  return j;
}

Result<http::Response> list_keypairs(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(std::string user,
                           target_user(api, call, call.req.query_param("user_id")));
  int64_t limit = kMaxLimit + 1;  // no paging before 2.35
  std::optional<std::string> marker;
  if (call.version.at_least(35)) {
    limit = kMaxLimit;
    if (auto l = call.req.query_param("limit")) {
      const std::string& s = *l;
      if (s.empty() || s.size() > 18 ||
          !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return fail(Code::kInvalidArgument, "Invalid input for query parameters limit. Value: " +
                                                s + ". '" + s + "' does not match '^[0-9]*$'");
      limit = std::min<int64_t>(std::stoll(s), kMaxLimit);
      if (limit == 0) limit = kMaxLimit;
    }
    marker = call.req.query_param("marker");
  }
  std::vector<KeypairRow> rows;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    rows.clear();
    if (marker) {
      CONCORD_ASSIGN_OR_RETURN(
          store::Rows m, tx.query("SELECT 1 FROM compute_keypairs WHERE user_id = ? AND name = ?",
                                  {user, *marker}));
      if (m.empty()) return fail(Code::kInvalidArgument, "marker [" + *marker + "] not found");
    }
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows found,
        tx.query(std::string("SELECT ") + kKeypairColumns +
                     " FROM compute_keypairs WHERE user_id = ? AND name > ? ORDER BY name LIMIT ?",
                 {user, marker.value_or(""), limit}));
    for (const store::Row& r : found) rows.push_back(keypair_from_row(r));
    return ok();
  }));
  Json items = Json::array();
  for (const KeypairRow& k : rows) items.push_back({{"keypair", keypair_json(call, k)}});
  Json body = {{"keypairs", items}};
  if (call.version.at_least(35) && static_cast<int64_t>(rows.size()) == limit && !rows.empty()) {
    std::string href = call.link("os-keypairs") + "?limit=" + std::to_string(limit) +
                       "&marker=" + url_encode(rows.back().name);
    if (user != call.caller.user_id) href += "&user_id=" + url_encode(user);
    body["keypairs_links"] = Json::array({{{"rel", "next"}, {"href", href}}});
  }
  return http::Response::json(200, dump_json(body));
}

Result<http::Response> show_keypair(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(std::string user,
                           target_user(api, call, call.req.query_param("user_id")));
  std::string name(call.param(0));
  KeypairRow k;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.read([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(store::Rows rows,
                             tx.query(std::string("SELECT ") + kKeypairColumns +
                                          " FROM compute_keypairs WHERE user_id = ? AND name = ?",
                                      {user, name}));
    if (rows.empty()) return keypair_not_found(name, user);
    k = keypair_from_row(rows[0]);
    return ok();
  }));
  Json j = keypair_json(call, k);
  j["user_id"] = k.user_id;
  j["id"] = k.id;
  j["created_at"] = k.created_at;
  j["updated_at"] = nullptr;
  j["deleted_at"] = nullptr;
  j["deleted"] = false;
  return http::Response::json(200, dump_json(Json{{"keypair", j}}));
}

Result<http::Response> create_keypair(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(Json body, NovaApi::body_object(call));
  auto kit = body.find("keypair");
  if (body.size() != 1 || kit == body.end() || !kit->is_object())
    return fail(Code::kInvalidArgument, "Invalid input for field/attribute keypair. Value: " +
                                            dump_json(body) + ". 'keypair' is a required property");
  const Json& in = *kit;
  std::set<std::string> allowed = {"name", "public_key"};
  if (call.version.at_least(2)) allowed.insert("type");
  if (call.version.at_least(10)) allowed.insert("user_id");
  for (auto& [k, v] : in.items()) {
    if (!allowed.contains(k))
      return fail(Code::kInvalidArgument,
                  "Additional properties are not allowed ('" + k + "' was unexpected)");
  }
  if (!in.contains("name"))
    return fail(Code::kInvalidArgument, "Invalid input for field/attribute keypair. Value: " +
                                            dump_json(in) + ". 'name' is a required property");
  CONCORD_RETURN_IF_ERROR(check_keypair_name(in["name"]));
  std::string name = in["name"].get<std::string>();
  std::string type = "ssh";
  if (auto it = in.find("type"); it != in.end()) {
    if (!it->is_string() || (*it != "ssh" && *it != "x509"))
      return fail(Code::kInvalidArgument,
                  "Invalid input for field/attribute type. Value: " + dump_json(*it) + ". " +
                      dump_json(*it) + " is not one of ['ssh', 'x509']");
    type = it->get<std::string>();
  }
  std::optional<std::string> requested_user;
  if (auto it = in.find("user_id"); it != in.end()) {
    if (!it->is_string() || it->get<std::string>().empty() || it->get<std::string>().size() > 255)
      return fail(Code::kInvalidArgument, "Invalid input for field/attribute user_id. Value: " +
                                              dump_json(*it) + ". must be a non-empty string");
    requested_user = it->get<std::string>();
  }
  CONCORD_ASSIGN_OR_RETURN(std::string user, target_user(api, call, requested_user));

  KeypairRow k;
  k.user_id = user;
  k.name = name;
  k.type = type;
  std::optional<std::string> private_key;
  if (auto it = in.find("public_key"); it != in.end()) {
    if (!it->is_string())
      return fail(Code::kInvalidArgument, "Invalid input for field/attribute public_key. Value: " +
                                              dump_json(*it) + ". is not of type 'string'");
    std::string key = it->get<std::string>();
    size_t b = key.find_first_not_of(" \t\r\n");
    size_t e = key.find_last_not_of(" \t\r\n");
    key = b == std::string::npos ? "" : key.substr(b, e - b + 1);
    if (key.empty()) return fail(invalid_key("failed to generate fingerprint").error());
    if (type == "x509") {
      CONCORD_ASSIGN_OR_RETURN(k.fingerprint, x509_fingerprint(key));
    } else {
      CONCORD_ASSIGN_OR_RETURN(k.fingerprint, ssh_fingerprint(key));
    }
    k.public_key = key;
  } else {
    Result<GeneratedKey> g =
        type == "x509" ? generate_x509(user, api.ctx().clock.now()) : generate_ssh_key();
    if (!g) return fail(g.error());
    k.public_key = g->public_key;
    k.fingerprint = g->fingerprint;
    private_key = g->private_key;
  }
  k.created_at = format_iso_naive(api.ctx().clock.now());
  std::string project = call.caller.project_id;
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_RETURN_IF_ERROR(tx.serialize());  // the quota count and MAX(id) hold until commit
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows existing,
        tx.query("SELECT 1 FROM compute_keypairs WHERE user_id = ? AND name = ?", {user, name}));
    if (!existing.empty())
      return fail(Code::kAlreadyExists, "Key pair '" + name + "' already exists.");
    CONCORD_ASSIGN_OR_RETURN(QuotaLimits limits, user_limits(tx, project, user));
    int64_t limit = limits.count("key_pairs") ? limits.at("key_pairs") : -1;
    CONCORD_ASSIGN_OR_RETURN(
        store::Rows count,
        tx.query("SELECT COUNT(*) FROM compute_keypairs WHERE user_id = ?", {user}));
    if (limit >= 0 && count[0].integer(0) + 1 > limit)
      return fail(Code::kResourceExhausted, "Quota exceeded, too many key pairs.");
    CONCORD_ASSIGN_OR_RETURN(store::Rows next,
                             tx.query("SELECT COALESCE(MAX(id), 0) FROM compute_keypairs"));
    k.id = next[0].integer(0) + 1;
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec(std::string("INSERT INTO compute_keypairs (") + kKeypairColumns +
                    ") VALUES (?, ?, ?, ?, ?, ?, ?)",
                {k.user_id, k.name, k.id, k.type, k.public_key, k.fingerprint, k.created_at}));
    (void)n;
    return ok();
  }));
  Json j = keypair_json(call, k);
  j["user_id"] = k.user_id;
  if (private_key) j["private_key"] = *private_key;
  return http::Response::json(call.version.at_least(2) ? 201 : 200,
                              dump_json(Json{{"keypair", j}}));
}

Result<http::Response> delete_keypair(NovaApi& api, NovaApi::Call& call) {
  CONCORD_ASSIGN_OR_RETURN(std::string user,
                           target_user(api, call, call.req.query_param("user_id")));
  std::string name(call.param(0));
  CONCORD_RETURN_IF_ERROR(api.ctx().store.write([&](store::Tx& tx) -> Status {
    CONCORD_ASSIGN_OR_RETURN(
        int64_t n,
        tx.exec("DELETE FROM compute_keypairs WHERE user_id = ? AND name = ?", {user, name}));
    if (n == 0) return keypair_not_found(name, user);
    return ok();
  }));
  return http::Response::empty(call.version.at_least(2) ? 204 : 202);
}

}  // namespace

void add_keypair_routes(NovaApi& api) {
  using M = http::Method;
  NovaApi* a = &api;
  api.add(M::kGet, "/v2.1/os-keypairs", "authenticated",
          [a](NovaApi::Call& c) { return list_keypairs(*a, c); });
  api.add(M::kPost, "/v2.1/os-keypairs", "authenticated",
          [a](NovaApi::Call& c) { return create_keypair(*a, c); });
  api.add(M::kGet, "/v2.1/os-keypairs/{keypair_name}", "authenticated",
          [a](NovaApi::Call& c) { return show_keypair(*a, c); });
  api.add(M::kDelete, "/v2.1/os-keypairs/{keypair_name}", "authenticated",
          [a](NovaApi::Call& c) { return delete_keypair(*a, c); });
}

}  // namespace concord::compute
