// os-keypairs: import (real key parsing, Nova's MD5 fingerprints checked against ssh-keygen's
// answers), generation (the private key really matches the public one), shapes per
// microversion, per-user ownership, paging, quota and bad input.
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "catalog_test_util.h"

namespace concord::compute::testing {
namespace {

// Keys made with ssh-keygen; fingerprints from `ssh-keygen -l -E md5`.
struct KnownKey {
  const char* what;
  const char* line;
  const char* md5;
};
const KnownKey kKnownKeys[] = {
    {"ecdsa p384 (what Tempest posts)",
     "ecdsa-sha2-nistp384 "
     "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBLaIHwn/EqGYlPxiPqkyzK09DOf460Na/"
     "ZZTZOk0PKfeqlBsrsACqWNHQaaO82KYG1qpvGibK3SdNXHqPhXVv9zNCVzvbdzCZhdkhe7maNZGu/"
     "7ArPlYffhLNmaaz6ya2A== test@x",
     "27:92:74:36:c0:bf:e7:ba:03:18:93:35:37:47:b0:0a"},
    {"rsa from Tempest's test_keypair_create_with_pub_key",
     "ssh-rsa "
     "AAAAB3NzaC1yc2EAAAADAQABAAABAQCsNe3/1ILNCqFyfYWDeTKLD6jEXC2OQHLmietMWW+/vdaZq7KZEwO0jhglaF"
     "jU1mpqq4Gz5RX156sCTNM9vRbwKAxfsdF9laBYVsex3m3Wmui3uYrKyumsoJn2g9GNnG1PI1mrVjZ61i0GY3khna+"
     "wzlTpCCmy5HNlrmbj3XLqBUpipTOXmsnr4sChzC53KCd8LXuwc1i/CZPvF+3XipvAgFSE53pCtLOeB1kYMOBaiUPLQ"
     "TWXR3JpckqFIQwhIH0zoHlJvZE8hh90XcPojYN56tI0OlrGqojbediJYD0rUsJu4weZpbn8vilb3JuDY+jwssnSA8w"
     "zBx3A/8y9Pp1B nova@ubuntu",
     "61:5f:fe:c7:e0:fd:d7:4a:2b:52:6e:a6:f5:bf:da:27"},
    {"ed25519",
     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGI0I2q4hMFOePWPr1JveI9iAfU6o0Y3vGrz3lL+PXnM e@x",
     "c3:6f:76:ee:2b:c0:73:b7:80:b3:8d:73:13:77:42:9a"},
    {"rsa 2048",
     "ssh-rsa "
     "AAAAB3NzaC1yc2EAAAADAQABAAABAQDZgsB4JOMBxOE5tyUIbX3GVJLJKx2w5zV4dUora6iA8RJUdjB6xvECNg6lXrEV"
     "7iDTk0fMrgDuG89pdxsZkv80/vkIgtJ0glc6OqlQaMe9zKGO7F8REbg5g0J7Q+OTCbYwLiOYPQin2MFkXkrV96Ev3QbM"
     "iYkKqSfTi9DtawAMEAOrhkHjiPbybvQ0XnAFtD7GzHC0vH5nzYE9F29mv6QiIZ4PynWKnt6nIT777o8Jmr1yOXO8YtmR"
     "07i+eTmUYNWclYtKYqNhe79BEDZAdg6X25vbJXoIDDTPWXjHwwtcNBmP3EaAYsQztIMBjnR1tkOKJcLl1hxeF+JGqsYI"
     "G2c3 r@x",
     "9c:da:0f:e2:7e:db:1d:72:de:18:cc:c7:b2:e3:47:22"},
    {"ecdsa p256, no comment",
     "ecdsa-sha2-nistp256 "
     "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLZsWmvPdnJFgFCskhCuWz4wo4cHrNoWQcR957sr"
     "kyRSt8dApDoXXx/qwPIbwhK3ouRfayRtEcAcQ3KC9WB+paU=",
     "fc:9f:9c:49:65:93:c1:29:81:aa:ad:ad:ce:c4:bd:7b"},
    {"ecdsa p521",
     "ecdsa-sha2-nistp521 "
     "AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAC4+Q8kULVXL6tSfXx/Lt+SX7kCkIRZTK2c97uh"
     "KnSN3EfkId8kY/qFWte9iVU9++CMIW2wOVdoGxnh8GrfvTbzXgGa45pdhD4bo7SMTIfZq/5t0e4voxmWY2qAsuG/"
     "E9DSug62MPv/jKMX2tVdca0tIdNV6pGM97sroF1ykD9BeTULUw== root@vm",
     "33:d9:76:fe:57:51:54:65:2d:b2:63:27:01:f3:b1:c0"},
};

std::string b64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}
std::string unb64(const std::string& text) {
  std::string out(text.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  size_t pad = 0;
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it) ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

class KeypairsTest : public CatalogTest {
 protected:
  Reply import(const std::string& name, const std::string& key, const std::string& token,
               const std::string& version = "2.2") {
    return post("/v2.1/os-keypairs", {{"keypair", {{"name", name}, {"public_key", key}}}}, token,
                version);
  }
};

class KnownKeyTest : public KeypairsTest, public ::testing::WithParamInterface<KnownKey> {};

TEST_P(KnownKeyTest, ImportGivesSshKeygenFingerprint) {
  Reply r = import("k1", GetParam().line, member1_);
  ASSERT_EQ(r.status, 201) << r;
  EXPECT_EQ(r.body["keypair"]["fingerprint"], GetParam().md5);
  EXPECT_EQ(r.body["keypair"]["public_key"], GetParam().line);
  EXPECT_EQ(r.body["keypair"]["type"], "ssh");
  EXPECT_FALSE(r.body["keypair"].contains("private_key"));
}

INSTANTIATE_TEST_SUITE_P(Keys, KnownKeyTest, ::testing::ValuesIn(kKnownKeys));

TEST_F(KeypairsTest, ShapesAt21) {
  Reply c = import("k21", kKnownKeys[1].line, member1_, "2.1");
  ASSERT_EQ(c.status, 200) << c;
  EXPECT_EQ(keys_of(c.body["keypair"]), sorted({"fingerprint", "name", "public_key", "user_id"}));
  EXPECT_EQ(c.body["keypair"]["user_id"], member1_user_);
  Reply l = get("/v2.1/os-keypairs", member1_, "2.1");
  ASSERT_EQ(l.status, 200) << l;
  ASSERT_EQ(l.body["keypairs"].size(), 1u);
  EXPECT_EQ(keys_of(l.body["keypairs"][0]), std::vector<std::string>{"keypair"});
  EXPECT_EQ(keys_of(l.body["keypairs"][0]["keypair"]),
            sorted({"fingerprint", "name", "public_key"}));
  Reply s = get("/v2.1/os-keypairs/k21", member1_, "2.1");
  ASSERT_EQ(s.status, 200) << s;
  EXPECT_EQ(keys_of(s.body["keypair"]),
            sorted({"public_key", "name", "fingerprint", "user_id", "deleted", "created_at",
                    "updated_at", "deleted_at", "id"}));
  EXPECT_TRUE(s.body["keypair"]["id"].is_number_integer());
  EXPECT_EQ(s.body["keypair"]["deleted"], false);
  EXPECT_TRUE(s.body["keypair"]["updated_at"].is_null());
  Reply d = del("/v2.1/os-keypairs/k21", member1_, "2.1");
  EXPECT_EQ(d.status, 202) << d;
}

TEST_F(KeypairsTest, ShapesAt22) {
  Reply c = import("k22", kKnownKeys[1].line, member1_, "2.2");
  ASSERT_EQ(c.status, 201) << c;
  EXPECT_EQ(keys_of(c.body["keypair"]),
            sorted({"fingerprint", "name", "public_key", "user_id", "type"}));
  Reply l = get("/v2.1/os-keypairs", member1_, "2.2");
  EXPECT_EQ(keys_of(l.body["keypairs"][0]["keypair"]),
            sorted({"fingerprint", "name", "public_key", "type"}));
  Reply s = get("/v2.1/os-keypairs/k22", member1_, "2.2");
  EXPECT_EQ(s.body["keypair"]["type"], "ssh");
  EXPECT_EQ(keys_of(s.body["keypair"]).size(), 10u);
  Reply d = del("/v2.1/os-keypairs/k22", member1_, "2.2");
  EXPECT_EQ(d.status, 204) << d;
  EXPECT_TRUE(d.raw.body.empty());
  Reply gone = get("/v2.1/os-keypairs/k22", member1_, "2.2");
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.message(), "Keypair k22 not found for user " + member1_user_);
  EXPECT_EQ(del("/v2.1/os-keypairs/k22", member1_, "2.2").status, 404);
}

TEST_F(KeypairsTest, GeneratedRsaKeyMatchesItsPrivateKey) {
  Reply r = post("/v2.1/os-keypairs", {{"keypair", {{"name", "gen"}}}}, member1_, "2.10");
  ASSERT_EQ(r.status, 201) << r;
  const Json& k = r.body["keypair"];
  std::string pub = k["public_key"];
  ASSERT_TRUE(pub.starts_with("ssh-rsa ")) << pub;
  std::string priv = k["private_key"];
  ASSERT_TRUE(priv.starts_with("-----BEGIN RSA PRIVATE KEY-----")) << priv.substr(0, 40);
  BIO* bio = BIO_new_mem_buf(priv.data(), static_cast<int>(priv.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(EVP_PKEY_get_bits(key), 2048);
  BIGNUM* n = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
  // The public blob's last field is the modulus: compare it with the private key's.
  std::string blob = unb64(pub.substr(8, pub.find(' ', 8) - 8));
  std::string modulus(static_cast<size_t>(BN_num_bytes(n)), '\0');
  BN_bn2bin(n, reinterpret_cast<unsigned char*>(modulus.data()));
  EXPECT_TRUE(blob.ends_with(modulus));
  BN_free(n);
  EVP_PKEY_free(key);
  // The fingerprint is the MD5 of that blob.
  unsigned char md[16];
  unsigned int len = 0;
  EVP_Digest(blob.data(), blob.size(), md, &len, EVP_md5(), nullptr);
  char hex[4];
  std::string fp;
  for (unsigned i = 0; i < len; ++i) {
    snprintf(hex, sizeof(hex), "%02x", md[i]);
    fp += (i ? ":" : "") + std::string(hex);
  }
  EXPECT_EQ(k["fingerprint"], fp);
  // The stored key is the public half only.
  Reply s = get("/v2.1/os-keypairs/gen", member1_, "2.10");
  EXPECT_EQ(s.body["keypair"]["public_key"], pub);
  EXPECT_FALSE(s.body["keypair"].contains("private_key"));
}

TEST_F(KeypairsTest, X509GeneratedAndImported) {
  Reply r = post("/v2.1/os-keypairs", {{"keypair", {{"name", "cert"}, {"type", "x509"}}}}, member1_,
                 "2.2");
  ASSERT_EQ(r.status, 201) << r;
  EXPECT_EQ(r.body["keypair"]["type"], "x509");
  std::string pem = r.body["keypair"]["public_key"];
  ASSERT_TRUE(pem.starts_with("-----BEGIN CERTIFICATE-----"));
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(cert, nullptr);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  EXPECT_EQ(std::string(cn), member1_user_);
  X509_free(cert);
  EXPECT_EQ(r.body["keypair"]["fingerprint"].get<std::string>().size(), 59u);  // SHA-1
  Reply list = get("/v2.1/os-keypairs", member1_, "2.2");
  EXPECT_EQ(list.body["keypairs"][0]["keypair"]["type"], "x509");
  // Re-importing the certificate under another name gives the same fingerprint.
  Reply imp = post("/v2.1/os-keypairs",
                   {{"keypair", {{"name", "cert2"}, {"type", "x509"}, {"public_key", pem}}}},
                   member1_, "2.2");
  ASSERT_EQ(imp.status, 201) << imp;
  EXPECT_EQ(imp.body["keypair"]["fingerprint"], r.body["keypair"]["fingerprint"]);
  Reply bad = post("/v2.1/os-keypairs",
                   {{"keypair", {{"name", "cert3"}, {"type", "x509"}, {"public_key", "junk"}}}},
                   member1_, "2.2");
  EXPECT_EQ(bad.status, 400) << bad;
}

std::string off_curve_p256() {
  std::string line = kKnownKeys[4].line;  // p256
  std::string blob = unb64(line.substr(20));
  blob.back() = static_cast<char>(blob.back() ^ 0x01);  // y no longer matches x
  return "ecdsa-sha2-nistp256 " + b64(blob);
}

std::string truncated_rsa() {
  std::string line = kKnownKeys[3].line;  // rsa 2048
  std::string b = line.substr(8, line.find(' ', 8) - 8);
  std::string blob = unb64(b);
  blob.resize(blob.size() - 10);
  return "ssh-rsa " + b64(blob);
}

struct BadKey {
  const char* what;
  std::string key;
};

class BadKeyTest : public KeypairsTest, public ::testing::WithParamInterface<BadKey> {};

TEST_P(BadKeyTest, Rejected400) {
  Reply r = import("bad", GetParam().key, member1_);
  EXPECT_EQ(r.status, 400) << GetParam().what << ": " << r;
  EXPECT_EQ(r.fault(), "badRequest");
  EXPECT_EQ(get("/v2.1/os-keypairs/bad", member1_).status, 404);
}

INSTANTIATE_TEST_SUITE_P(
    Validation, BadKeyTest,
    ::testing::Values(
        BadKey{"junk (Tempest)", "ssh-rsa JUNK nova@ubuntu"}, BadKey{"blank (Tempest)", " "},
        BadKey{"too many bits (Tempest)",
               "ssh-rsa " + std::string(2048, 'A') + " openstack@ubuntu"},
        BadKey{"type mismatch", std::string("ssh-ed25519 ") +
                                    (kKnownKeys[3].line + 8)},  // rsa blob labelled ed25519
        BadKey{"unknown type", "ssh-foo AAAA"}, BadKey{"no blob", "ssh-rsa"},
        BadKey{"off-curve point", off_curve_p256()}, BadKey{"truncated rsa", truncated_rsa()},
        BadKey{"bad base64", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGI0I2q4hMFOe*WPr1JveI9i"}));

TEST_F(KeypairsTest, BadNames) {
  for (const std::string& name :
       {std::string(""), std::string(256, 'k'), std::string("key_/.\\@:"), std::string(" lead"),
        std::string("trail "), std::string("tab\tname")}) {
    Reply r = post("/v2.1/os-keypairs", {{"keypair", {{"name", name}}}}, member1_, "2.2");
    EXPECT_EQ(r.status, 400) << "'" << name << "' " << r;
  }
  Reply ok = post("/v2.1/os-keypairs",
                  {{"keypair", {{"name", "fine name_-1"}, {"public_key", kKnownKeys[1].line}}}},
                  member1_, "2.2");
  EXPECT_EQ(ok.status, 201) << ok;
}

TEST_F(KeypairsTest, BadBodies) {
  for (const Json& body :
       {Json({{"keypair", {{"public_key", kKnownKeys[1].line}}}}),
        Json({{"keypair", {{"name", "x"}, {"color", "blue"}}}}),
        Json({{"keypair", {{"name", "x"}, {"type", "pgp"}}}}), Json({{"keypair", "x"}}),
        Json({{"other", Json::object()}}), Json({{"keypair", {{"name", 5}}}}),
        Json({{"keypair", {{"name", "x"}, {"public_key", 5}}}})}) {
    Reply r = post("/v2.1/os-keypairs", body, member1_, "2.2");
    EXPECT_EQ(r.status, 400) << body << " " << r;
  }
  // `type` is not part of the 2.1 schema and user_id not before 2.10.
  EXPECT_EQ(
      post("/v2.1/os-keypairs", {{"keypair", {{"name", "x"}, {"type", "ssh"}}}}, member1_, "2.1")
          .status,
      400);
  EXPECT_EQ(
      post("/v2.1/os-keypairs", {{"keypair", {{"name", "x"}, {"user_id", "u"}}}}, admin_, "2.9")
          .status,
      400);
}

TEST_F(KeypairsTest, DuplicateName409PerUser) {
  ASSERT_EQ(import("dup", kKnownKeys[1].line, member1_).status, 201);
  Reply again = import("dup", kKnownKeys[0].line, member1_);
  EXPECT_EQ(again.status, 409) << again;
  EXPECT_EQ(again.message(), "Key pair 'dup' already exists.");
  // Names are per user: another user (even in the same project) may reuse it.
  EXPECT_EQ(import("dup", kKnownKeys[1].line, reader1_).status, 201);
}

TEST_F(KeypairsTest, KeysArePrivateToTheirUser) {
  ASSERT_EQ(import("mine", kKnownKeys[1].line, member1_).status, 201);
  EXPECT_EQ(get("/v2.1/os-keypairs/mine", member2_).status, 404);
  EXPECT_EQ(get("/v2.1/os-keypairs/mine", reader1_).status, 404);
  EXPECT_EQ(get("/v2.1/os-keypairs", member2_).body["keypairs"].size(), 0u);
  EXPECT_EQ(del("/v2.1/os-keypairs/mine", member2_, "2.2").status, 404);
  // A non-admin naming another user is refused; before 2.10 user_id is ignored.
  Reply peek = get("/v2.1/os-keypairs/mine?user_id=" + member1_user_, member2_, "2.10");
  EXPECT_EQ(peek.status, 403) << peek;
  EXPECT_EQ(get("/v2.1/os-keypairs/mine?user_id=" + member1_user_, member2_, "2.9").status, 404);
  EXPECT_EQ(get("/v2.1/os-keypairs", "").status, 401);
}

TEST_F(KeypairsTest, AdminActsForOtherUsersAt210) {
  Reply c =
      post("/v2.1/os-keypairs",
           {{"keypair",
             {{"name", "forme"}, {"public_key", kKnownKeys[1].line}, {"user_id", member1_user_}}}},
           admin_, "2.10");
  ASSERT_EQ(c.status, 201) << c;
  EXPECT_EQ(c.body["keypair"]["user_id"], member1_user_);
  EXPECT_EQ(get("/v2.1/os-keypairs/forme", member1_, "2.10").status, 200);
  EXPECT_EQ(get("/v2.1/os-keypairs/forme", admin_, "2.10").status, 404);
  Reply s = get("/v2.1/os-keypairs/forme?user_id=" + member1_user_, admin_, "2.10");
  EXPECT_EQ(s.status, 200) << s;
  Reply l = get("/v2.1/os-keypairs?user_id=" + member1_user_, admin_, "2.10");
  EXPECT_EQ(l.body["keypairs"].size(), 1u);
  Reply d = del("/v2.1/os-keypairs/forme?user_id=" + member1_user_, admin_, "2.10");
  EXPECT_EQ(d.status, 204) << d;
  Reply deny = post("/v2.1/os-keypairs", {{"keypair", {{"name", "x"}, {"user_id", member2_user_}}}},
                    member1_, "2.10");
  EXPECT_EQ(deny.status, 403) << deny;
}

TEST_F(KeypairsTest, PagingAt235) {
  for (const char* n : {"a", "b", "c", "d"})
    ASSERT_EQ(import(n, kKnownKeys[1].line, member1_).status, 201);
  Reply p1 = get("/v2.1/os-keypairs?limit=2", member1_, "2.35");
  ASSERT_EQ(p1.status, 200) << p1;
  ASSERT_EQ(p1.body["keypairs"].size(), 2u);
  EXPECT_EQ(p1.body["keypairs"][1]["keypair"]["name"], "b");
  EXPECT_EQ(p1.body["keypairs_links"][0]["href"],
            "http://localhost:8774/compute/v2.1/os-keypairs?limit=2&marker=b");
  Reply p2 = get("/v2.1/os-keypairs?limit=2&marker=b", member1_, "2.35");
  EXPECT_EQ(p2.body["keypairs"][0]["keypair"]["name"], "c");
  Reply p3 = get("/v2.1/os-keypairs?limit=2&marker=d", member1_, "2.35");
  EXPECT_EQ(p3.body["keypairs"].size(), 0u);
  EXPECT_EQ(get("/v2.1/os-keypairs?marker=zz", member1_, "2.35").status, 400);
  EXPECT_EQ(get("/v2.1/os-keypairs?limit=-1", member1_, "2.35").status, 400);
  // Before 2.35 there is no paging: everything, no links.
  Reply old = get("/v2.1/os-keypairs?limit=2", member1_, "2.34");
  EXPECT_EQ(old.body["keypairs"].size(), 4u);
  EXPECT_FALSE(old.body.contains("keypairs_links"));
}

TEST_F(KeypairsTest, QuotaPerUser) {
  Reply q = put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"key_pairs", 2}}}}, admin_);
  ASSERT_EQ(q.status, 200) << q;
  ASSERT_EQ(import("q1", kKnownKeys[1].line, member1_).status, 201);
  ASSERT_EQ(import("q2", kKnownKeys[1].line, member1_).status, 201);
  Reply over = import("q3", kKnownKeys[1].line, member1_);
  EXPECT_EQ(over.status, 403) << over;
  EXPECT_EQ(over.message(), "Quota exceeded, too many key pairs.");
  // Another user of the same project has their own count.
  EXPECT_EQ(import("q1", kKnownKeys[1].line, reader1_).status, 201);
  // Unlimited.
  ASSERT_EQ(put("/v2.1/os-quota-sets/" + p1_, {{"quota_set", {{"key_pairs", -1}}}}, admin_).status,
            200);
  EXPECT_EQ(import("q3", kKnownKeys[1].line, member1_).status, 201);
}

}  // namespace
}  // namespace concord::compute::testing
