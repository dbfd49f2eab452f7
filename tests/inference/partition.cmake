# Split points (src/inference/partition): the cuts of the fixture chain and of a hand-built
# DAG, head + tail equal to the whole model.
find_package(ZLIB REQUIRED)
add_executable(inference_partition_test ${CMAKE_CURRENT_LIST_DIR}/partition_test.cc)
target_compile_definitions(inference_partition_test PRIVATE
  CONCORD_MODEL_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures/models")
target_link_libraries(inference_partition_test PRIVATE concord_inference_partition
  concord_base ZLIB::ZLIB GTest::gmock GTest::gtest_main)
gtest_discover_tests(inference_partition_test DISCOVERY_TIMEOUT 60)
