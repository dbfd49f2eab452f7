# The Trove v1.0 API (src/database/service) on a real store, real tokens and the real compute
# service (instances are service servers; the agent's part is played by reports). The same
# binary on PostgreSQL with CONCORD_DATABASE_TEST_STORE=postgres.
add_executable(database_service_test service_api_test.cc)
target_include_directories(database_service_test PRIVATE
  ${PROJECT_SOURCE_DIR}/tests/compute/service)
target_link_libraries(database_service_test PRIVATE concord_database_service
  concord_database_engine concord_compute_service concord_identity concord_usage concord_store
  concord_http concord_test_postgres concord_test_support concord_base GTest::gtest_main)
gtest_discover_tests(database_service_test DISCOVERY_TIMEOUT 60)
add_test(NAME database_service_test_postgres COMMAND database_service_test)
set_tests_properties(database_service_test_postgres PROPERTIES
  ENVIRONMENT CONCORD_DATABASE_TEST_STORE=postgres LABELS slow TIMEOUT 600)

# Configuration groups through the Trove API (same fixture as database_service_test).
add_executable(database_service_configurations_test service_configurations_test.cc)
target_include_directories(database_service_configurations_test PRIVATE
  ${PROJECT_SOURCE_DIR}/tests/compute/service)
target_link_libraries(database_service_configurations_test PRIVATE concord_database_service
  concord_database_engine concord_compute_service concord_identity concord_usage concord_store
  concord_http concord_test_postgres concord_test_support concord_base GTest::gtest_main)
gtest_discover_tests(database_service_configurations_test DISCOVERY_TIMEOUT 60)
add_test(NAME database_service_configurations_test_postgres
  COMMAND database_service_configurations_test)
set_tests_properties(database_service_configurations_test_postgres PROPERTIES
  ENVIRONMENT CONCORD_DATABASE_TEST_STORE=postgres LABELS slow TIMEOUT 600)
# Backups, restore and point-in-time restore (api_backups.cc) and the agents' backup routes, on
# the same stack as service_api_test; also on PostgreSQL with CONCORD_DATABASE_TEST_STORE.
add_executable(database_backups_test service_backups_test.cc)
target_include_directories(database_backups_test PRIVATE
  ${PROJECT_SOURCE_DIR}/tests/compute/service)
target_link_libraries(database_backups_test PRIVATE concord_database_service
  concord_database_engine concord_compute_service concord_identity concord_usage concord_store
  concord_http concord_driver_util concord_test_postgres concord_test_support concord_base
  GTest::gtest_main)
gtest_discover_tests(database_backups_test DISCOVERY_TIMEOUT 60)
add_test(NAME database_backups_test_postgres COMMAND database_backups_test)
set_tests_properties(database_backups_test_postgres PROPERTIES
  ENVIRONMENT CONCORD_DATABASE_TEST_STORE=postgres LABELS slow TIMEOUT 600)
# Operations extensions (api_operations.cc): deletion protection, events, automated backups with
# retention, the storage watch and metrics; same fixture, also on PostgreSQL.
add_executable(database_operations_test service_operations_test.cc)
target_include_directories(database_operations_test PRIVATE
  ${PROJECT_SOURCE_DIR}/tests/compute/service)
target_link_libraries(database_operations_test PRIVATE concord_database_service
  concord_database_engine concord_compute_service concord_identity concord_usage concord_store
  concord_http concord_driver_util concord_test_postgres concord_test_support concord_base
  GTest::gtest_main)
gtest_discover_tests(database_operations_test DISCOVERY_TIMEOUT 60)
add_test(NAME database_operations_test_postgres COMMAND database_operations_test)
set_tests_properties(database_operations_test_postgres PROPERTIES
  ENVIRONMENT CONCORD_DATABASE_TEST_STORE=postgres LABELS slow TIMEOUT 600)
