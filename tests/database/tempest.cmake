# trove-tempest-plugin 1.5.0's scenario tests (Debian's trove-tempest-plugin) through
# tests/tempest/run.sh's database profile: the real binary's all-in-one agent runs each Trove
# instance as a real PostgreSQL 15 / MariaDB 10.11 engine, and the tests log in to it over the
# MySQL / PostgreSQL protocol. Fails when a test listed in tests/tempest/expected-pass-database.txt
# does not pass; exclusions and their reasons: docs/testing.md ("Tempest database"). Needs root
# (engines run as concord-db). About 3-6 min (the replication classes set it): the plugin's
# waiters sleep 5 s before the first poll and 10 s between polls (hard-coded). COST: its seconds
# here plus margin, so ctest -j2 starts it among the first.
if(TARGET concord AND EXISTS /usr/bin/tempest
   AND EXISTS /usr/lib/python3/dist-packages/trove_tempest_plugin)
  add_test(NAME tempest_database COMMAND ${PROJECT_SOURCE_DIR}/tests/tempest/run.sh)
  set_tests_properties(tempest_database PROPERTIES
    ENVIRONMENT "CONCORD_BIN=$<TARGET_FILE:concord>;TEMPEST_PROFILE=database;TEMPEST_TIMEOUT=900"
    TIMEOUT 1200
    COST 300
    LABELS "tempest;slow;workloads")
endif()
