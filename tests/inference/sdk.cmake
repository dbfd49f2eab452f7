# The device SDK (src/inference/sdk): the pure split planner always; the OIP client, session
# and CLI when the serving library (oip.h, model_server.h) is built.
add_executable(inference_sdk_planner_test ${CMAKE_CURRENT_LIST_DIR}/sdk_planner_test.cc)
target_link_libraries(inference_sdk_planner_test PRIVATE concord_inference_planner
  GTest::gmock GTest::gtest_main)
gtest_discover_tests(inference_sdk_planner_test DISCOVERY_TIMEOUT 60)

if(TARGET concord_inference_sdk)
  find_package(ZLIB REQUIRED)
  add_executable(inference_sdk_test ${CMAKE_CURRENT_LIST_DIR}/sdk_session_test.cc)
  target_compile_definitions(inference_sdk_test PRIVATE
    CONCORD_MODEL_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures/models")
  target_link_libraries(inference_sdk_test PRIVATE concord_inference_sdk concord_inference_serving
    concord_http concord_base ZLIB::ZLIB GTest::gmock GTest::gtest_main)
  gtest_discover_tests(inference_sdk_test DISCOVERY_TIMEOUT 60)
endif()

# The emulated-network test: concord-device against `concord inference-replica --split` across
# a veth pair (Python, standard library; it skips itself when not root or without `ip netns`).
if(TARGET concord_inference_sdk AND TARGET concord)
  add_test(NAME inference_split_network
           COMMAND /usr/bin/python3 -m unittest -v test_split_network
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/tests/integration)
  set_tests_properties(inference_split_network PROPERTIES
    ENVIRONMENT "CONCORD_DEVICE_BIN=$<TARGET_FILE:concord-device>;CONCORD_BIN=$<TARGET_FILE:concord>;PYTHONDONTWRITEBYTECODE=1"
    TIMEOUT 900
    # Alone: it emulates CPU conditions with cgroup quotas, and a neighbouring test's load (a
    # Tempest run starting at the same time) changed the overloaded case's right answer.
    RUN_SERIAL TRUE
    LABELS "integration;slow")
endif()
