# Database engines on the real PostgreSQL 15 and MariaDB 10.11 binaries (they need root to run
# engines as concord-db; without root or the binaries the tests skip with the reason).
add_executable(database_engine_credentials_test engine_credentials_test.cc)
target_link_libraries(database_engine_credentials_test PRIVATE concord_database_engine
  GTest::gtest_main)
gtest_discover_tests(database_engine_credentials_test)

add_executable(database_engine_common_test engine_common_test.cc)
target_link_libraries(database_engine_common_test PRIVATE concord_database_engine
  GTest::gtest_main)
gtest_discover_tests(database_engine_common_test)

add_executable(database_engine_desired_state_test engine_desired_state_test.cc)
target_link_libraries(database_engine_desired_state_test PRIVATE concord_database_engine
  GTest::gtest_main)
gtest_discover_tests(database_engine_desired_state_test)

foreach(engine postgres mariadb backup replication_postgres replication_mariadb)
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/engine_${engine}_test.cc)
    add_executable(database_engine_${engine}_test engine_${engine}_test.cc)
    target_include_directories(database_engine_${engine}_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(database_engine_${engine}_test PRIVATE concord_database_engine
      concord_test_support GTest::gtest_main)
    gtest_discover_tests(database_engine_${engine}_test DISCOVERY_TIMEOUT 60
      PROPERTIES TIMEOUT 300 LABELS "database;root")
  endif()
endforeach()

if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/engine_driver_test.cc AND TARGET concord_compute_driver)
  add_executable(database_engine_driver_test engine_driver_test.cc)
  target_include_directories(database_engine_driver_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(database_engine_driver_test PRIVATE concord_compute_driver concord_http
    concord_database_engine concord_test_support GTest::gtest_main)
  gtest_discover_tests(database_engine_driver_test DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 300 LABELS "database;root")
endif()

# Configuration-group parameters: the catalog's checks, and their effect on the real engines.
add_executable(database_engine_configuration_test engine_configuration_test.cc)
target_include_directories(database_engine_configuration_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(database_engine_configuration_test PRIVATE concord_database_engine
  concord_test_support GTest::gtest_main)
gtest_discover_tests(database_engine_configuration_test DISCOVERY_TIMEOUT 60
  PROPERTIES TIMEOUT 300 LABELS "database;root")
