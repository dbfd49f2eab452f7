// store_test's main: registers the environment that stops the shared PostgreSQL server.
#include <gtest/gtest.h>

#include "postgres_server.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // GoogleTest takes ownership of the environment.
  ::testing::AddGlobalTestEnvironment(
      std::make_unique<concord::test_support::PostgresEnvironment>().release());
  return RUN_ALL_TESTS();
}
