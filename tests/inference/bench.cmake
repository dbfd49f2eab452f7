# bench/inference/serving.sh's "raw runtime" row: the OpenCV runtime called in-process on the
# Fashion-MNIST fixture (bench/ is not a CMake subdirectory, so the program is built here).
find_package(ZLIB REQUIRED)
add_executable(inference_raw_bench ${PROJECT_SOURCE_DIR}/bench/inference/raw_runtime.cc)
target_include_directories(inference_raw_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_compile_definitions(inference_raw_bench PRIVATE
  CONCORD_MODEL_FIXTURE_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures/models")
target_link_libraries(inference_raw_bench PRIVATE concord_inference_runtime concord_base
  ZLIB::ZLIB CLI11::CLI11 Threads::Threads)
