# The stable-endpoint proxy: its pure protocol/SCRAM parts (no root), and the proxy against a
# private PostgreSQL 15 (needs root to run it as concord-db; skips with the reason otherwise).
if(TARGET concord_database_proxy)
  add_executable(database_proxy_protocol_test proxy_protocol_test.cc)
  target_link_libraries(database_proxy_protocol_test PRIVATE concord_database_proxy
    concord_database_engine GTest::gtest_main)
  gtest_discover_tests(database_proxy_protocol_test)

  add_executable(database_proxy_endpoint_set_test proxy_endpoint_set_test.cc)
  target_link_libraries(database_proxy_endpoint_set_test PRIVATE concord_database_proxy
    GTest::gtest_main)
  gtest_discover_tests(database_proxy_endpoint_set_test)

  add_executable(database_proxy_test proxy_test.cc)
  target_include_directories(database_proxy_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(database_proxy_test PRIVATE concord_database_proxy
    concord_database_engine concord_test_support PostgreSQL::PostgreSQL GTest::gtest_main)
  gtest_discover_tests(database_proxy_test DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 300 LABELS "database;root")
endif()
