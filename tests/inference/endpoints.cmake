# Inference endpoints: the /inference/v1/endpoints API, the controller (FakeClock) and the OIP
# gateway, on a real store, real tokens, the real registry, and replicas run in-process by a
# test backend on real HTTP servers (port 0). With the serving library present the replicas are
# real ModelServers on the Fashion-MNIST fixture; the same binary on PostgreSQL with
# CONCORD_INFERENCE_TEST_STORE=postgres.
add_executable(inference_endpoints_test endpoints_test.cc)
target_compile_definitions(inference_endpoints_test PRIVATE
  CONCORD_MODEL_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures/models")
target_link_libraries(inference_endpoints_test PRIVATE concord_inference_endpoints
  concord_inference_registry concord_usage concord_identity concord_store concord_http
  concord_test_postgres concord_test_support concord_base ZLIB::ZLIB GTest::gtest_main)
if(TARGET concord_inference_serving)
  target_compile_definitions(inference_endpoints_test PRIVATE CONCORD_HAVE_MODEL_SERVER=1)
  target_link_libraries(inference_endpoints_test PRIVATE concord_inference_serving
    concord_inference_runtime)
endif()
gtest_discover_tests(inference_endpoints_test DISCOVERY_TIMEOUT 60)
add_test(NAME inference_endpoints_test_postgres COMMAND inference_endpoints_test)
set_tests_properties(inference_endpoints_test_postgres PROPERTIES
  ENVIRONMENT CONCORD_INFERENCE_TEST_STORE=postgres LABELS slow TIMEOUT 1200)
