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

# Configuration groups end to end: the real CLI's `database configuration ...` against real
# engines, each value checked through psql / mariadb.
add_test(NAME integration_database_configurations
         COMMAND /usr/bin/python3 -m unittest -v test_database_configurations
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(integration_database_configurations PROPERTIES
  ENVIRONMENT "CONCORD_BIN=$<TARGET_FILE:concord>;PYTHONDONTWRITEBYTECODE=1"
  TIMEOUT 900
  COST 40
  LABELS "integration;slow;workloads")
# Backups, restore and point-in-time restore end to end: the real CLI's `database backup ...` and
# `instance create --backup`, the restorePoint extension, psql / mariadb comparing contents.
add_test(NAME integration_database_backups
         COMMAND /usr/bin/python3 -m unittest -v test_database_backups
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(integration_database_backups PROPERTIES
  ENVIRONMENT "CONCORD_BIN=$<TARGET_FILE:concord>;PYTHONDONTWRITEBYTECODE=1"
  TIMEOUT 900
  COST 60
  LABELS "integration;slow;workloads")
# Operations extensions end to end (deletion protection, automated backups, the agent's detail
# in the view and metrics, the events feed) against a real PostgreSQL engine.
add_test(NAME integration_database_operations
         COMMAND /usr/bin/python3 -m unittest -v test_database_operations
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(integration_database_operations PROPERTIES
  ENVIRONMENT "CONCORD_BIN=$<TARGET_FILE:concord>;PYTHONDONTWRITEBYTECODE=1"
  TIMEOUT 900
  COST 40
  LABELS "integration;slow;workloads")

# Stable endpoints and read replicas end to end: the endpoint proxy in front of each instance
# (TLS through it; transaction pooling with pgbench -M prepared), `instance create --replica-of`,
# promote and detach with the real CLI, rows checked through psql / mariadb.
add_test(NAME integration_database_replicas
         COMMAND /usr/bin/python3 -m unittest -v test_database_replicas
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(integration_database_replicas PROPERTIES
  ENVIRONMENT "CONCORD_BIN=$<TARGET_FILE:concord>;PYTHONDONTWRITEBYTECODE=1"
  TIMEOUT 900
  COST 60
  LABELS "integration;slow;workloads")

# Automatic failover end to end: a server with two external agents (hosts db-a, db-b), one HA
# PostgreSQL instance, a client writing through its endpoint while the primary's engine is
# killed, then its host vanishes; no acknowledged write may be lost and only one primary may
# ever accept writes. Kills and pauses processes: runs alone.
add_test(NAME integration_database_failover
         COMMAND /usr/bin/python3 -m unittest -v test_database_failover
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(integration_database_failover PROPERTIES
  ENVIRONMENT "CONCORD_BIN=$<TARGET_FILE:concord>;PYTHONDONTWRITEBYTECODE=1"
  TIMEOUT 900
  COST 60
  RUN_SERIAL TRUE
  LABELS "integration;slow;workloads")
