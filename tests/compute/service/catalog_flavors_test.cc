// Flavors, extra specs and flavor access: shapes per microversion, visibility, policy and
// bad input.
#include "catalog_test_util.h"

namespace concord::compute::testing {
namespace {

class FlavorsTest : public CatalogTest {
 protected:
  Json create(const Json& flavor, const std::string& version = "") {
    Reply r = post("/v2.1/flavors", {{"flavor", flavor}}, admin_, version);
    EXPECT_EQ(r.status, 200) << r;
    return r.body["flavor"];
  }
  std::vector<std::string> names(const Reply& r) {
    std::vector<std::string> out;
    for (const Json& f : r.body["flavors"]) out.push_back(f["name"].get<std::string>());
    return out;
  }
  bool lists(const Reply& r, const std::string& name) {
    auto n = names(r);
    return std::find(n.begin(), n.end(), name) != n.end();
  }
};

const std::vector<std::string> kDetail21 = {"id",
                                            "name",
                                            "links",
                                            "ram",
                                            "vcpus",
                                            "disk",
                                            "swap",
                                            "OS-FLV-DISABLED:disabled",
                                            "OS-FLV-EXT-DATA:ephemeral",
                                            "os-flavor-access:is_public",
                                            "rxtx_factor"};

TEST_F(FlavorsTest, DefaultFlavorsListedInIdOrder) {
  Reply r = get("/v2.1/flavors", member1_);
  ASSERT_EQ(r.status, 200) << r;
  std::vector<std::string> ids;
  for (const Json& f : r.body["flavors"]) {
    ids.push_back(f["id"].get<std::string>());
    EXPECT_EQ(keys_of(f), sorted({"id", "name", "links"}));
  }
  // Sorted by flavorid as text, as Nova's database does.
  EXPECT_EQ(ids, (std::vector<std::string>{"1", "2", "3", "4", "42", "5", "84"}));
  EXPECT_EQ(r.body["flavors"][0]["links"][0]["href"],
            "http://localhost:8774/compute/v2.1/flavors/1");
  EXPECT_EQ(r.body["flavors"][0]["links"][1]["rel"], "bookmark");
  EXPECT_EQ(r.body["flavors"][0]["links"][1]["href"], "http://localhost:8774/compute/flavors/1");
  EXPECT_FALSE(r.body.contains("flavors_links"));
}

struct ShapeCase {
  std::string version;
  std::vector<std::string> extra;  // keys beyond the 2.1 detail set
};

class FlavorShapeTest : public FlavorsTest, public ::testing::WithParamInterface<ShapeCase> {};

TEST_P(FlavorShapeTest, DetailShowAndCreateKeysPerVersion) {
  const ShapeCase& c = GetParam();
  std::vector<std::string> want = kDetail21;
  want.insert(want.end(), c.extra.begin(), c.extra.end());
  Reply list = get("/v2.1/flavors/detail", member1_, c.version);
  ASSERT_EQ(list.status, 200) << list;
  for (const Json& f : list.body["flavors"]) EXPECT_EQ(keys_of(f), sorted(want)) << f;
  Reply show = get("/v2.1/flavors/1", member1_, c.version);
  ASSERT_EQ(show.status, 200) << show;
  EXPECT_EQ(keys_of(show.body["flavor"]), sorted(want));
  Json created =
      create({{"name", "shape-" + c.version}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}}, c.version);
  EXPECT_EQ(keys_of(created), sorted(want));
  Reply brief = get("/v2.1/flavors", member1_, c.version);
  std::vector<std::string> brief_keys = {"id", "name", "links"};
  if (c.version >= "2.55") brief_keys.push_back("description");
  EXPECT_EQ(keys_of(brief.body["flavors"][0]), sorted(brief_keys));
}

INSTANTIATE_TEST_SUITE_P(Versions, FlavorShapeTest,
                         ::testing::Values(ShapeCase{"2.1", {}}, ShapeCase{"2.54", {}},
                                           ShapeCase{"2.55", {"description"}},
                                           ShapeCase{"2.60", {"description"}},
                                           ShapeCase{"2.61", {"description", "extra_specs"}},
                                           ShapeCase{"2.79", {"description", "extra_specs"}}));

TEST_F(FlavorsTest, SwapIsEmptyStringWhenZeroAndNumberOtherwise) {
  Reply tiny = get("/v2.1/flavors/1", member1_);
  EXPECT_EQ(tiny.body["flavor"]["swap"], "");
  EXPECT_EQ(tiny.body["flavor"]["ram"], 512);
  EXPECT_EQ(tiny.body["flavor"]["vcpus"], 1);
  EXPECT_EQ(tiny.body["flavor"]["disk"], 1);
  Json f = create({{"name", "with-swap"},
                   {"ram", "1024"},
                   {"vcpus", "2"},
                   {"disk", "5"},
                   {"swap", 256},
                   {"id", 1234}});
  EXPECT_EQ(f["swap"], 256);
  EXPECT_EQ(f["ram"], 1024);   // string digits accepted, as Nova's schema does
  EXPECT_EQ(f["id"], "1234");  // numeric ids come back as text
  EXPECT_EQ(f["os-flavor-access:is_public"], true);
}

TEST_F(FlavorsTest, CreateWithoutIdMakesUuid) {
  Json f = create({{"name", "auto-id"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}});
  EXPECT_EQ(f["id"].get<std::string>().size(), 36u);
}

TEST_F(FlavorsTest, DescriptionAndExtraSpecsAtLatest) {
  Json f = create(
      {{"name", "described"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"description", "small one"}},
      "2.55");
  EXPECT_EQ(f["description"], "small one");
  std::string id = f["id"];
  Reply spec = post("/v2.1/flavors/" + id + "/os-extra_specs",
                    {{"extra_specs", {{"hw:cpu_policy", "dedicated"}}}}, admin_);
  ASSERT_EQ(spec.status, 200) << spec;
  Reply show = get("/v2.1/flavors/" + id, member1_, "2.61");
  EXPECT_EQ(show.body["flavor"]["extra_specs"], Json({{"hw:cpu_policy", "dedicated"}}));
  Reply upd =
      put("/v2.1/flavors/" + id, {{"flavor", {{"description", "changed"}}}}, admin_, "2.55");
  ASSERT_EQ(upd.status, 200) << upd;
  EXPECT_EQ(upd.body["flavor"]["description"], "changed");
  Reply cleared =
      put("/v2.1/flavors/" + id, {{"flavor", {{"description", nullptr}}}}, admin_, "2.55");
  ASSERT_EQ(cleared.status, 200) << cleared;
  EXPECT_TRUE(cleared.body["flavor"]["description"].is_null());
  // Before 2.55 the update route does not exist; description is refused on create.
  EXPECT_EQ(put("/v2.1/flavors/" + id, {{"flavor", {{"description", "x"}}}}, admin_, "2.54").status,
            404);
  Reply early = post(
      "/v2.1/flavors",
      {{"flavor", {{"name", "d2"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"description", "x"}}}},
      admin_, "2.54");
  EXPECT_EQ(early.status, 400) << early;
}

struct BadFlavor {
  const char* what;
  Json flavor;
};

class BadFlavorTest : public FlavorsTest, public ::testing::WithParamInterface<BadFlavor> {};

TEST_P(BadFlavorTest, Rejected400) {
  Reply r = post("/v2.1/flavors", {{"flavor", GetParam().flavor}}, admin_);
  EXPECT_EQ(r.status, 400) << GetParam().what << ": " << r;
  EXPECT_EQ(r.fault(), "badRequest");
}

INSTANTIATE_TEST_SUITE_P(
    Validation, BadFlavorTest,
    ::testing::Values(
        BadFlavor{"no name", {{"ram", 64}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"empty name", {{"name", ""}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"long name",
                  {{"name", std::string(256, 'a')}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"leading space", {{"name", " x"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"zero ram", {{"name", "x"}, {"ram", 0}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"negative vcpus", {{"name", "x"}, {"ram", 64}, {"vcpus", -1}, {"disk", 0}}},
        BadFlavor{"zero vcpus", {{"name", "x"}, {"ram", 64}, {"vcpus", 0}, {"disk", 0}}},
        BadFlavor{"negative disk", {{"name", "x"}, {"ram", 64}, {"vcpus", 1}, {"disk", -1}}},
        BadFlavor{"float ram", {{"name", "x"}, {"ram", 1.5}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"text ram", {{"name", "x"}, {"ram", "lots"}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"huge ram",
                  {{"name", "x"}, {"ram", int64_t{1} << 40}, {"vcpus", 1}, {"disk", 0}}},
        BadFlavor{"bad id", {{"name", "x"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"id", "a/b"}}},
        BadFlavor{"zero rxtx",
                  {{"name", "x"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"rxtx_factor", 0}}},
        BadFlavor{"bad is_public",
                  {{"name", "x"},
                   {"ram", 64},
                   {"vcpus", 1},
                   {"disk", 0},
                   {"os-flavor-access:is_public", "maybe"}}},
        BadFlavor{"negative swap",
                  {{"name", "x"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"swap", -1}}},
        BadFlavor{"unknown key",
                  {{"name", "x"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"color", "red"}}}));

TEST_F(FlavorsTest, MalformedBodies400) {
  for (const char* body : {"", "not json", "[]", "{\"flavor\": 3}", "{}"}) {
    Reply r = call(http::Method::kPost, "/v2.1/flavors", admin_, body);
    EXPECT_EQ(r.status, 400) << body << " " << r;
  }
}

TEST_F(FlavorsTest, DuplicateNameOrId409) {
  create({{"name", "dup"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"id", "dup-id"}});
  Reply by_name =
      post("/v2.1/flavors", {{"flavor", {{"name", "dup"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}}}},
           admin_);
  EXPECT_EQ(by_name.status, 409) << by_name;
  EXPECT_EQ(by_name.message(), "Flavor with name dup already exists.");
  Reply by_id = post(
      "/v2.1/flavors",
      {{"flavor", {{"name", "other"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"id", "dup-id"}}}},
      admin_);
  EXPECT_EQ(by_id.status, 409) << by_id;
  EXPECT_EQ(by_id.message(), "Flavor with ID dup-id already exists.");
}

TEST_F(FlavorsTest, WritePolicyIsAdminOnly) {
  Json body = {{"flavor", {{"name", "nope"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}}}};
  for (const std::string* t : {&member1_, &reader1_, &member2_}) {
    Reply r = post("/v2.1/flavors", body, *t);
    EXPECT_EQ(r.status, 403) << r;
    EXPECT_EQ(r.fault(), "forbidden");
    EXPECT_EQ(del("/v2.1/flavors/1", *t).status, 403);
    EXPECT_EQ(post("/v2.1/flavors/1/os-extra_specs", {{"extra_specs", {{"a", "b"}}}}, *t).status,
              403);
    EXPECT_EQ(get("/v2.1/flavors/1/os-flavor-access", *t).status, 403);
  }
  EXPECT_EQ(post("/v2.1/flavors", body, "").status, 401);
}

TEST_F(FlavorsTest, DeleteThen404) {
  Json f = create({{"name", "gone"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"id", "g1"}});
  ASSERT_EQ(post("/v2.1/flavors/g1/os-extra_specs", {{"extra_specs", {{"k", "v"}}}}, admin_).status,
            200);
  Reply d = del("/v2.1/flavors/g1", admin_);
  EXPECT_EQ(d.status, 202) << d;
  EXPECT_TRUE(d.raw.body.empty());
  Reply show = get("/v2.1/flavors/g1", admin_);
  EXPECT_EQ(show.status, 404);
  EXPECT_EQ(show.fault(), "itemNotFound");
  EXPECT_EQ(show.message(), "Flavor g1 could not be found.");
  EXPECT_EQ(del("/v2.1/flavors/g1", admin_).status, 404);
  // A flavor re-created with the same id does not inherit the old extra specs.
  create({{"name", "gone"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}, {"id", "g1"}});
  EXPECT_EQ(get("/v2.1/flavors/g1/os-extra_specs", admin_).body["extra_specs"], Json::object());
}

TEST_F(FlavorsTest, PrivateFlavorVisibility) {
  Json f = create({{"name", "private"},
                   {"ram", 64},
                   {"vcpus", 1},
                   {"disk", 0},
                   {"id", "priv"},
                   {"os-flavor-access:is_public", "False"}});
  EXPECT_EQ(f["os-flavor-access:is_public"], false);
  // A new private flavor has an empty access list (Tempest checks this).
  Reply empty = get("/v2.1/flavors/priv/os-flavor-access", admin_);
  EXPECT_EQ(empty.status, 200) << empty;
  EXPECT_EQ(empty.body["flavor_access"], Json::array());
  // Not visible to p1 until access is granted.
  EXPECT_EQ(get("/v2.1/flavors/priv", member1_).status, 404);
  EXPECT_FALSE(lists(get("/v2.1/flavors/detail", member1_), "private"));
  EXPECT_EQ(get("/v2.1/flavors/priv/os-extra_specs", member1_).status, 404);
  Reply add = post("/v2.1/flavors/priv/action", {{"addTenantAccess", {{"tenant", p1_}}}}, admin_);
  ASSERT_EQ(add.status, 200) << add;
  EXPECT_EQ(add.body["flavor_access"], Json::array({{{"flavor_id", "priv"}, {"tenant_id", p1_}}}));
  EXPECT_EQ(get("/v2.1/flavors/priv", member1_).status, 200);
  EXPECT_TRUE(lists(get("/v2.1/flavors/detail", member1_), "private"));
  EXPECT_TRUE(lists(get("/v2.1/flavors/detail?is_public=None", member1_), "private"));
  EXPECT_EQ(get("/v2.1/flavors/priv", member2_).status, 404);
  EXPECT_FALSE(lists(get("/v2.1/flavors", member2_), "private"));
  Reply acc = get("/v2.1/flavors/priv/os-flavor-access", admin_);
  ASSERT_EQ(acc.status, 200) << acc;
  bool found = false;
  for (const Json& a : acc.body["flavor_access"]) {
    EXPECT_EQ(keys_of(a), sorted({"flavor_id", "tenant_id"}));
    found = found || a["tenant_id"] == p1_;
  }
  EXPECT_TRUE(found);
  Reply dup = post("/v2.1/flavors/priv/action", {{"addTenantAccess", {{"tenant", p1_}}}}, admin_);
  EXPECT_EQ(dup.status, 409) << dup;
  Reply rm = post("/v2.1/flavors/priv/action", {{"removeTenantAccess", {{"tenant", p1_}}}}, admin_);
  EXPECT_EQ(rm.status, 200) << rm;
  EXPECT_EQ(get("/v2.1/flavors/priv", member1_).status, 404);
  Reply rm2 =
      post("/v2.1/flavors/priv/action", {{"removeTenantAccess", {{"tenant", p1_}}}}, admin_);
  EXPECT_EQ(rm2.status, 404) << rm2;
}

TEST_F(FlavorsTest, AccessOnPublicFlavor) {
  Reply list = get("/v2.1/flavors/1/os-flavor-access", admin_);
  EXPECT_EQ(list.status, 404) << list;
  Reply add = post("/v2.1/flavors/1/action", {{"addTenantAccess", {{"tenant", p1_}}}}, admin_);
  EXPECT_EQ(add.status, 409) << add;
  Reply bad = post("/v2.1/flavors/1/action", {{"explode", {{"tenant", p1_}}}}, admin_);
  EXPECT_EQ(bad.status, 400) << bad;
  Reply no_tenant = post("/v2.1/flavors/1/action", {{"addTenantAccess", Json::object()}}, admin_);
  EXPECT_EQ(no_tenant.status, 400) << no_tenant;
  EXPECT_EQ(
      post("/v2.1/flavors/nope/action", {{"addTenantAccess", {{"tenant", p1_}}}}, admin_).status,
      404);
}

TEST_F(FlavorsTest, IsPublicFilterForAdmin) {
  create({{"name", "priv2"},
          {"ram", 64},
          {"vcpus", 1},
          {"disk", 0},
          {"os-flavor-access:is_public", false}});
  create({{"name", "pub2"}, {"ram", 64}, {"vcpus", 1}, {"disk", 0}});
  for (const char* f : {"f", "false", "no", "0", "False"}) {
    Reply r = get(std::string("/v2.1/flavors/detail?is_public=") + f, admin_);
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_TRUE(lists(r, "priv2")) << f;
    EXPECT_FALSE(lists(r, "pub2")) << f;
  }
  for (const char* t : {"t", "true", "yes", "1", "True"}) {
    Reply r = get(std::string("/v2.1/flavors/detail?is_public=") + t, admin_);
    EXPECT_TRUE(lists(r, "pub2")) << t;
  }
  Reply all = get("/v2.1/flavors/detail?is_public=None", admin_);
  EXPECT_TRUE(lists(all, "priv2"));
  EXPECT_TRUE(lists(all, "pub2"));
  Reply bad = get("/v2.1/flavors/detail?is_public=perhaps", admin_);
  EXPECT_EQ(bad.status, 400) << bad;
  EXPECT_EQ(bad.message(), "Invalid is_public filter [perhaps]");
}

TEST_F(FlavorsTest, MinRamMinDiskAndSorting) {
  Reply r = get("/v2.1/flavors/detail?minRam=4096&minDisk=50", member1_);
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(names(r), (std::vector<std::string>{"m1.large", "m1.xlarge"}));
  Reply by_ram = get("/v2.1/flavors?sort_key=memory_mb&sort_dir=desc", member1_);
  ASSERT_EQ(by_ram.status, 200) << by_ram;
  EXPECT_EQ(by_ram.body["flavors"][0]["name"], "m1.xlarge");
  EXPECT_EQ(by_ram.body["flavors"].back()["name"], "c1.nano");
  for (const char* q :
       {"minRam=abc", "minDisk=-1", "sort_key=color", "sort_dir=up", "limit=x", "marker=nope"}) {
    Reply bad = get(std::string("/v2.1/flavors?") + q, member1_);
    EXPECT_EQ(bad.status, 400) << q << " " << bad;
  }
}

TEST_F(FlavorsTest, PagingWithLinks) {
  Reply page1 = get("/v2.1/flavors?limit=3", member1_);
  ASSERT_EQ(page1.status, 200) << page1;
  ASSERT_EQ(page1.body["flavors"].size(), 3u);
  ASSERT_TRUE(page1.body.contains("flavors_links"));
  EXPECT_EQ(page1.body["flavors_links"][0]["rel"], "next");
  EXPECT_EQ(page1.body["flavors_links"][0]["href"],
            "http://localhost:8774/compute/v2.1/flavors?limit=3&marker=3");
  Reply page2 = get("/v2.1/flavors?limit=3&marker=3", member1_);
  ASSERT_EQ(page2.body["flavors"].size(), 3u);
  EXPECT_EQ(page2.body["flavors"][0]["id"], "4");
  Reply page3 = get("/v2.1/flavors?limit=3&marker=5", member1_);
  ASSERT_EQ(page3.body["flavors"].size(), 1u);
  EXPECT_FALSE(page3.body.contains("flavors_links"));
}

TEST_F(FlavorsTest, DisabledHiddenFromNonAdminListsOnly) {
  ASSERT_OK(store_->write([&](store::Tx& tx) -> Status {
    auto n = tx.exec("UPDATE compute_flavors SET disabled = 1 WHERE id = '5'");
    if (!n) return fail(n.error());
    return ok();
  }));
  EXPECT_FALSE(lists(get("/v2.1/flavors", member1_), "m1.xlarge"));
  EXPECT_TRUE(lists(get("/v2.1/flavors", admin_), "m1.xlarge"));
  Reply show = get("/v2.1/flavors/5", member1_);
  EXPECT_EQ(show.status, 200);
  EXPECT_EQ(show.body["flavor"]["OS-FLV-DISABLED:disabled"], true);
}

TEST_F(FlavorsTest, ExtraSpecsCrud) {
  Reply set =
      post("/v2.1/flavors/2/os-extra_specs",
           {{"extra_specs",
             {{"hw:mem_page_size", "large"}, {"quota:cpu_shares", 100}, {"trusted", true}}}},
           admin_);
  ASSERT_EQ(set.status, 200) << set;
  EXPECT_EQ(set.body["extra_specs"]["quota:cpu_shares"], "100");
  EXPECT_EQ(set.body["extra_specs"]["trusted"], "True");
  Reply all = get("/v2.1/flavors/2/os-extra_specs", reader1_);
  ASSERT_EQ(all.status, 200) << all;
  EXPECT_EQ(all.body["extra_specs"].size(), 3u);
  Reply one = get("/v2.1/flavors/2/os-extra_specs/hw:mem_page_size", member1_);
  ASSERT_EQ(one.status, 200) << one;
  EXPECT_EQ(one.body, Json({{"hw:mem_page_size", "large"}}));
  Reply upd = put("/v2.1/flavors/2/os-extra_specs/hw:mem_page_size",
                  {{"hw:mem_page_size", "small"}}, admin_);
  ASSERT_EQ(upd.status, 200) << upd;
  EXPECT_EQ(upd.body, Json({{"hw:mem_page_size", "small"}}));
  Reply mismatch = put("/v2.1/flavors/2/os-extra_specs/hw:mem_page_size", {{"other", "x"}}, admin_);
  EXPECT_EQ(mismatch.status, 400) << mismatch;
  EXPECT_EQ(mismatch.message(), "Request body and URI mismatch");
  Reply many = put("/v2.1/flavors/2/os-extra_specs/a", {{"a", "1"}, {"b", "2"}}, admin_);
  EXPECT_EQ(many.status, 400) << many;
  Reply gone = del("/v2.1/flavors/2/os-extra_specs/hw:mem_page_size", admin_);
  EXPECT_EQ(gone.status, 200) << gone;
  Reply missing = get("/v2.1/flavors/2/os-extra_specs/hw:mem_page_size", admin_);
  EXPECT_EQ(missing.status, 404) << missing;
  EXPECT_EQ(missing.message(), "Flavor 2 has no extra specs with key hw:mem_page_size.");
  EXPECT_EQ(del("/v2.1/flavors/2/os-extra_specs/hw:mem_page_size", admin_).status, 404);
  EXPECT_EQ(get("/v2.1/flavors/999/os-extra_specs", admin_).status, 404);
  EXPECT_EQ(
      post("/v2.1/flavors/999/os-extra_specs", {{"extra_specs", {{"a", "b"}}}}, admin_).status,
      404);
}

TEST_F(FlavorsTest, ExtraSpecsBadInput) {
  for (const Json& body :
       {Json({{"extra_specs", {{"bad/key", "v"}}}}),
        Json({{"extra_specs", {{"k", std::string(256, 'v')}}}}),
        Json({{"extra_specs", {{"k", Json::object()}}}}), Json({{"extra_specs", "text"}}),
        Json({{"other", Json::object()}}), Json({{"extra_specs", {{"", "v"}}}})}) {
    Reply r = post("/v2.1/flavors/1/os-extra_specs", body, admin_);
    EXPECT_EQ(r.status, 400) << body << " " << r;
  }
}

TEST_F(FlavorsTest, LoadFlavorHonoursAccess) {
  create({{"name", "lf"},
          {"ram", 64},
          {"vcpus", 1},
          {"disk", 0},
          {"id", "lf"},
          {"os-flavor-access:is_public", false}});
  ASSERT_EQ(post("/v2.1/flavors/lf/os-extra_specs", {{"extra_specs", {{"k", "v"}}}}, admin_).status,
            200);
  ASSERT_OK(store_->read([&](store::Tx& tx) -> Status {
    auto hidden = load_flavor(tx, "lf", p1_, false);
    EXPECT_FALSE(hidden.has_value());
    if (!hidden) {
      EXPECT_EQ(hidden.error().code(), Code::kNotFound);
      EXPECT_EQ(hidden.error().message(), "Flavor lf could not be found.");
    }
    auto as_admin = load_flavor(tx, "lf", p1_, true);
    EXPECT_TRUE(as_admin.has_value());
    if (as_admin) {
      EXPECT_EQ(as_admin->ram_mb, 64);
      EXPECT_EQ(as_admin->extra_specs.size(), 1u);
    }
    auto pub = load_flavor(tx, "42", p2_, false);
    EXPECT_TRUE(pub.has_value());
    if (pub) {
      EXPECT_EQ(pub->name, "c1.nano");
    }
    return ok();
  }));
}

TEST_F(FlavorsTest, EnsureDefaultFlavorsIsIdempotentAndKeepsOperatorChanges) {
  ASSERT_EQ(del("/v2.1/flavors/84", admin_).status, 202);
  ASSERT_OK(ensure_default_flavors(*store_, clock_));
  // Flavors exist, so defaults are not re-created over the operator's deletion.
  EXPECT_EQ(get("/v2.1/flavors/84", admin_).status, 404);
}

}  // namespace
}  // namespace concord::compute::testing
