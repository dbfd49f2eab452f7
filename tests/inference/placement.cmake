# Inference replicas as compute servers (src/inference/placement) on a real store with the real
# compute service and its agent routes.
add_executable(inference_placement_test placement_test.cc)
target_include_directories(inference_placement_test PRIVATE
  ${PROJECT_SOURCE_DIR}/tests/compute/service)
target_compile_definitions(inference_placement_test PRIVATE
  CONCORD_MODEL_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures/models")
target_link_libraries(inference_placement_test PRIVATE concord_inference_placement
  concord_compute_service concord_compute_driver concord_identity concord_usage concord_store
  concord_http concord_test_postgres concord_test_support concord_base GTest::gtest_main)
gtest_discover_tests(inference_placement_test DISCOVERY_TIMEOUT 60)

# End to end with an in-process Agent running the inference driver and the REAL
# `concord inference-replica` (the binary this build makes).
find_package(OpenSSL 3 REQUIRED)
add_executable(inference_placement_e2e_test placement_e2e_test.cc)
add_dependencies(inference_placement_e2e_test concord)
target_compile_definitions(inference_placement_e2e_test PRIVATE
  CONCORD_BINARY="$<TARGET_FILE:concord>"
  CONCORD_MODEL_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures/models")
target_link_libraries(inference_placement_e2e_test PRIVATE concord_inference_placement
  concord_agent concord_compute_service concord_compute_driver concord_identity concord_usage
  concord_store concord_http concord_test_postgres concord_test_support concord_base
  OpenSSL::Crypto GTest::gtest_main)
gtest_discover_tests(inference_placement_e2e_test DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 300)
