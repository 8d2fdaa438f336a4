#include "server/parameter_shard.h"

#include <gtest/gtest.h>

#include "common/config.h"
#include "server/initializer.h"

namespace freshet {
namespace {

proto::TablesConfig Tables() {
  auto t = ParseTablesConfig(R"(
    tables { name: "a" dim: 4 initializer { kind: UNIFORM scale: 0.1 seed: 7 }
             optimizer { sgd { learning_rate: 0.5 } } }
    tables { name: "b" dim: 2 initializer { kind: CONSTANT scale: 1 }
             optimizer { adagrad { learning_rate: 0.1 } } }
  )", "t");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(ParameterShardTest, PullInitializesDeterministicallyAndPushApplies) {
  auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
  const uint64_t keys[] = {10, 20, 10};
  float out[12];
  ASSERT_TRUE(shard->HandlePull(0, 4, keys, 3, out).ok());
  float want[4];
  InitializeRow(Tables().tables(0).initializer(), 0, 10, want, 4);
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(out[j], want[j]);
    EXPECT_EQ(out[8 + j], want[j]);  // duplicate key, same row
  }
  const float grads[4] = {1, 2, 3, 4};
  ASSERT_TRUE(shard->HandlePush(0, 4, keys, 1, grads).ok());
  ASSERT_TRUE(shard->HandlePull(0, 4, keys, 1, out).ok());
  for (int j = 0; j < 4; ++j) EXPECT_FLOAT_EQ(out[j], want[j] - 0.5f * grads[j]);
  const ServerStats s = shard->Stats();
  EXPECT_EQ(s.rows, 2);
  EXPECT_EQ(s.pull_requests, 2);
  EXPECT_EQ(s.push_requests, 1);
  EXPECT_EQ(s.keys_pushed, 1);
  EXPECT_GT(s.bytes, 0);
}

TEST(ParameterShardTest, BadRequestsAreInvalidArgument) {
  auto shard = std::move(ParameterShard::Create(Tables(), 4)).value();
  const uint64_t key = 1;
  float out[4];
  Status st = shard->HandlePull(2, 4, &key, 1, out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "unknown table id 2 (server has 2 tables)");
  st = shard->HandlePush(1, 4, &key, 1, out);
  EXPECT_EQ(st.message(), "table 'b' has dim 2, request says 4");
  EXPECT_EQ(shard->Stats().rows, 0);
}

}  // namespace
}  // namespace freshet
