# Managed databases end to end: the real binary's in-process agent runs real PostgreSQL and
# MariaDB engines; the tenant uses the real `openstack database ...` CLI, psql and mariadb.
# Needs root and the engines (skips with the reason otherwise); not under the sanitizers.
add_test(NAME integration_database_instances
         COMMAND /usr/bin/python3 -m unittest -v test_database_instances
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(integration_database_instances PROPERTIES
  ENVIRONMENT "CONCORD_BIN=$<TARGET_FILE:concord>;PYTHONDONTWRITEBYTECODE=1"
  TIMEOUT 900
  COST 60
  LABELS "integration;slow;workloads")
