# Included by CTest (tests/tempest/CMakeLists.txt: TEST_INCLUDE_FILES) after every test is
# declared: seconds of the long tests declared in folders whose CMakeLists.txt set no COST, as
# measured on the 2-core CI machine (default build; the ASan build runs the same order). Only
# the order matters: ctest -j2 starts the costliest first. A renamed test just loses its cost.
set_tests_properties(inference_split_network PROPERTIES COST 58)
set_tests_properties(compute_catalog_test_postgres PROPERTIES COST 43)
set_tests_properties(PolicyMatrixTest.EveryRouteEveryCaller PROPERTIES COST 40)
set_tests_properties(identity_test_postgres PROPERTIES COST 30)
set_tests_properties(VmDriverTest.LifecycleBootStopStartRebootAdoptDestroy PROPERTIES COST 25)
set_tests_properties(VmDriverTest.ResizeRestartsWithTheNewFlavorAndRebuildKeepsTheForward
                     PROPERTIES COST 20)
set_tests_properties(VmDriverTest.DirectKernelBootWithoutNetworkOrConfigDrive PROPERTIES COST 16)
set_tests_properties(compute_agent_test_postgres PROPERTIES COST 16)
set_tests_properties(inference_endpoints_test_postgres PROPERTIES COST 14)
set_tests_properties(VmDriverTest.KilledQemuShowsShutdownAndStartsAgain PROPERTIES COST 14)
set_tests_properties(OipCodec.RandomMutationsNeverCrash PROPERTIES COST 8)
set_tests_properties(image_test_postgres PROPERTIES COST 9)
set_tests_properties(store_test PROPERTIES COST 7)
