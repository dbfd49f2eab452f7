# The OIP v2 codec, the batching model server and the replica process (src/inference/serving):
# fake models in process, the committed Fashion-MNIST model over a real server on port 0.
add_executable(serving_test serving_oip_test.cc serving_test.cc)
target_compile_definitions(serving_test PRIVATE
  CONCORD_MODEL_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures/models")
target_link_libraries(serving_test PRIVATE concord_test_support concord_inference_serving concord_inference_runtime
  concord_http concord_base ZLIB::ZLIB GTest::gmock GTest::gtest_main)
gtest_discover_tests(serving_test DISCOVERY_TIMEOUT 60)
