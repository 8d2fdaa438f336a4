#include "model/features.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace freshet {
namespace {

TEST(HashTokenTest, DeterministicAndPinned) {
  EXPECT_EQ(HashToken(0, "abc"), HashToken(0, std::string("abc")));
  // Pinned: keys in tables and snapshots depend on this value. If this
  // fails, HashToken changed and every stored model is invalid.
  EXPECT_EQ(HashToken(0, "abc"), 0xec56ac5ddf8b1126ULL);
  EXPECT_EQ(HashToken(0, ""), 0xefd01f60ba992926ULL);
  EXPECT_EQ(HashToken(1, "abc"), 0x72ff91400d571407ULL);
}

TEST(HashTokenTest, SaltAndTokenSeparation) {
  EXPECT_NE(HashToken(1, "abc"), HashToken(2, "abc"));
  EXPECT_NE(HashToken(0, "abc"), HashToken(0, "abd"));
  EXPECT_NE(HashToken(0, "abc"), HashToken(0, "acb"));
  EXPECT_NE(HashToken(0, ""), HashToken(0, std::string(1, '\0')));
  EXPECT_NE(HashToken(7, "a"), HashToken(7, "aa"));
  // Non-ASCII bytes hash as unsigned bytes (no sign-extension surprises).
  EXPECT_NE(HashToken(0, "\xff"), HashToken(0, "\x7f"));
}

// Header of the examples used below.
const std::vector<std::string> kColumns = {"user_id", "item", "tags", "price", "age"};

proto::FeatureConfig TestConfig() {
  proto::FeatureConfig config;
  auto* user = config.add_slots();
  user->set_name("user");
  user->set_column("user_id");
  user->set_salt(12345);
  auto* item = config.add_slots();
  item->set_name("item");  // column defaults to the name; salt to HashToken(0, "item")
  auto* tags = config.add_slots();
  tags->set_name("tags");
  tags->set_multi_valued(true);
  tags->set_pooling(proto::MEAN);
  auto* log2 = config.add_slots();
  log2->set_name("price_log2");
  log2->set_column("price");
  log2->set_transform(proto::SlotConfig::LOG2_BUCKET);
  auto* bounds = config.add_slots();
  bounds->set_name("price_bounds");
  bounds->set_column("price");
  bounds->set_transform(proto::SlotConfig::BOUNDARIES);
  for (float b : {1.f, 10.f, 100.f}) bounds->add_boundaries(b);
  auto* age = config.add_dense();
  age->set_name("age");
  age->set_transform(proto::DenseConfig::LOG1P);
  auto* price = config.add_dense();
  price->set_name("price_raw");
  price->set_column("price");
  return config;
}

Example MakeExample(std::vector<std::string> values, float label = 1) {
  Example e;
  e.label = label;
  e.time = 1700000000;
  e.user = "u1";
  e.oracle = 0.25f;
  e.values = std::move(values);
  return e;
}

std::unique_ptr<FeatureEncoder> TestEncoder() {
  auto enc = FeatureEncoder::Create(TestConfig(), kColumns);
  EXPECT_TRUE(enc.ok()) << enc.status();
  return enc.ok() ? std::move(enc).value() : nullptr;
}

// Keys of slot s, example i.
std::vector<uint64_t> KeysOf(const EncodedBatch& b, int s, int i) {
  return std::vector<uint64_t>(b.keys[s].begin() + b.offsets[s][i],
                               b.keys[s].begin() + b.offsets[s][i + 1]);
}

TEST(FeatureEncoderTest, EncodesSlotsAndDense) {
  auto enc = TestEncoder();
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(enc->num_slots(), 5);
  EXPECT_EQ(enc->num_dense(), 2);
  const uint64_t item_salt = HashToken(0, "item");
  const uint64_t tags_salt = HashToken(0, "tags");
  const uint64_t log2_salt = HashToken(0, "price_log2");
  const uint64_t bounds_salt = HashToken(0, "price_bounds");

  const std::vector<Example> ex = {
      MakeExample({"alice", "i1", "a b", "7", "3"}, 1),
      MakeExample({"bob", "", "  a  c ", "-5", ""}, 0),
      MakeExample({"", "i2", "", "1000", "0"}, 1),
      MakeExample({"carol", "i1", " ", "+0.5", "1e2"}, 0),
  };
  EncodedBatch b;
  ASSERT_TRUE(enc->Encode(ex.data(), static_cast<int>(ex.size()), &b).ok());
  ASSERT_EQ(b.size, 4);
  ASSERT_EQ(b.num_slots(), 5);
  EXPECT_EQ(b.num_dense, 2);
  for (int s = 0; s < 5; ++s) ASSERT_EQ(b.offsets[s].size(), 5u) << s;

  // Explicit salt.
  EXPECT_EQ(KeysOf(b, 0, 0), std::vector<uint64_t>{HashToken(12345, "alice")});
  EXPECT_EQ(KeysOf(b, 0, 1), std::vector<uint64_t>{HashToken(12345, "bob")});
  EXPECT_TRUE(KeysOf(b, 0, 2).empty());  // empty single value: no key
  // Default salt = HashToken(0, name), column = name.
  EXPECT_EQ(KeysOf(b, 1, 0), std::vector<uint64_t>{HashToken(item_salt, "i1")});
  EXPECT_TRUE(KeysOf(b, 1, 1).empty());
  EXPECT_EQ(KeysOf(b, 1, 3), KeysOf(b, 1, 0));
  // Multi-valued, empty tokens skipped.
  EXPECT_EQ(KeysOf(b, 2, 0),
            (std::vector<uint64_t>{HashToken(tags_salt, "a"), HashToken(tags_salt, "b")}));
  EXPECT_EQ(KeysOf(b, 2, 1),
            (std::vector<uint64_t>{HashToken(tags_salt, "a"), HashToken(tags_salt, "c")}));
  EXPECT_TRUE(KeysOf(b, 2, 2).empty());
  EXPECT_TRUE(KeysOf(b, 2, 3).empty());
  // Equal tokens of different slots get different keys.
  EXPECT_NE(HashToken(item_salt, "a"), HashToken(tags_salt, "a"));
  // LOG2_BUCKET: floor(log2(1 + max(x, 0))): 7 -> 3, -5 -> 0, 1000 -> 9, 0.5 -> 0.
  EXPECT_EQ(KeysOf(b, 3, 0), std::vector<uint64_t>{HashToken(log2_salt, "3")});
  EXPECT_EQ(KeysOf(b, 3, 1), std::vector<uint64_t>{HashToken(log2_salt, "0")});
  EXPECT_EQ(KeysOf(b, 3, 2), std::vector<uint64_t>{HashToken(log2_salt, "9")});
  EXPECT_EQ(KeysOf(b, 3, 3), std::vector<uint64_t>{HashToken(log2_salt, "0")});
  // BOUNDARIES [1, 10, 100]: index of the first boundary > x.
  EXPECT_EQ(KeysOf(b, 4, 0), std::vector<uint64_t>{HashToken(bounds_salt, "1")});
  EXPECT_EQ(KeysOf(b, 4, 1), std::vector<uint64_t>{HashToken(bounds_salt, "0")});
  EXPECT_EQ(KeysOf(b, 4, 2), std::vector<uint64_t>{HashToken(bounds_salt, "3")});
  EXPECT_EQ(KeysOf(b, 4, 3), std::vector<uint64_t>{HashToken(bounds_salt, "0")});

  // Dense: age LOG1P (empty -> 0), price IDENTITY; row-major.
  ASSERT_EQ(b.dense.size(), 8u);
  EXPECT_FLOAT_EQ(b.dense[0], std::log(4.f));
  EXPECT_FLOAT_EQ(b.dense[1], 7.f);
  EXPECT_FLOAT_EQ(b.dense[2], 0.f);
  EXPECT_FLOAT_EQ(b.dense[3], -5.f);
  EXPECT_FLOAT_EQ(b.dense[4], 0.f);
  EXPECT_FLOAT_EQ(b.dense[5], 1000.f);
  EXPECT_FLOAT_EQ(b.dense[6], std::log(101.f));
  EXPECT_FLOAT_EQ(b.dense[7], 0.5f);

  EXPECT_EQ(b.labels, (std::vector<float>{1, 0, 1, 0}));
  EXPECT_EQ(b.oracle, (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}));
  EXPECT_EQ(b.times[0], 1700000000);
  EXPECT_EQ(b.users[0], HashToken(0, "u1"));
}

TEST(FeatureEncoderTest, BoundaryValuesGoToTheNextBucket) {
  auto enc = TestEncoder();
  ASSERT_NE(enc, nullptr);
  const uint64_t salt = HashToken(0, "price_bounds");
  const char* values[] = {"0.99", "1", "9.5", "10", "100", "100.5"};
  const char* buckets[] = {"0", "1", "1", "2", "3", "3"};
  for (int j = 0; j < 6; ++j) {
    EncodedBatch b;
    const Example e = MakeExample({"u", "i", "", values[j], "1"});
    ASSERT_TRUE(enc->Encode(&e, 1, &b).ok());
    EXPECT_EQ(KeysOf(b, 4, 0), std::vector<uint64_t>{HashToken(salt, buckets[j])}) << values[j];
  }
}

TEST(FeatureEncoderTest, EmptyUserHashesToZero) {
  auto enc = TestEncoder();
  ASSERT_NE(enc, nullptr);
  Example e = MakeExample({"u", "i", "", "1", "1"});
  e.user.clear();
  EncodedBatch b;
  ASSERT_TRUE(enc->Encode(&e, 1, &b).ok());
  EXPECT_EQ(b.users[0], 0u);
}

TEST(FeatureEncoderTest, MissingColumnNamesSlotAndColumn) {
  proto::FeatureConfig config = TestConfig();
  config.mutable_slots(3)->set_column("cost");
  auto enc = FeatureEncoder::Create(config, kColumns);
  ASSERT_FALSE(enc.ok());
  EXPECT_EQ(enc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(enc.status().message().find("price_log2"), std::string::npos) << enc.status();
  EXPECT_NE(enc.status().message().find("cost"), std::string::npos) << enc.status();

  config = TestConfig();
  config.mutable_dense(0)->set_name("height");  // column defaults to the name
  enc = FeatureEncoder::Create(config, kColumns);
  ASSERT_FALSE(enc.ok());
  EXPECT_NE(enc.status().message().find("height"), std::string::npos) << enc.status();
}

TEST(FeatureEncoderTest, BadBoundariesRejected) {
  proto::FeatureConfig config = TestConfig();
  config.mutable_slots(4)->clear_boundaries();
  EXPECT_EQ(FeatureEncoder::Create(config, kColumns).status().code(), StatusCode::kInvalidArgument);
  config.mutable_slots(4)->add_boundaries(5);
  config.mutable_slots(4)->add_boundaries(2);
  auto enc = FeatureEncoder::Create(config, kColumns);
  EXPECT_EQ(enc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(enc.status().message().find("ascending"), std::string::npos) << enc.status();
}

void ExpectSameBatch(const EncodedBatch& a, const EncodedBatch& b) {
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.num_dense, b.num_dense);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.oracle, b.oracle);
  EXPECT_EQ(a.users, b.users);
  EXPECT_EQ(a.times, b.times);
  EXPECT_EQ(a.keys, b.keys);
  EXPECT_EQ(a.offsets, b.offsets);
  EXPECT_EQ(a.dense, b.dense);
}

TEST(FeatureEncoderTest, BadNumberIsInvalidArgumentAndBatchUnchanged) {
  auto enc = TestEncoder();
  ASSERT_NE(enc, nullptr);
  const std::vector<Example> ex = {
      MakeExample({"alice", "i1", "a b", "7", "3"}),
      MakeExample({"bob", "i2", "c", "abc", "3"}),  // bad price
  };
  EncodedBatch b;
  Status st = enc->Encode(ex.data(), 2, &b);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("example 1"), std::string::npos) << st;
  EXPECT_NE(st.message().find("price"), std::string::npos) << st;
  EXPECT_NE(st.message().find("'abc'"), std::string::npos) << st;
  EXPECT_EQ(b.size, 1);  // the examples before the bad one

  // Append leaves the batch exactly as it was, whichever feature is bad:
  // dense first, or a slot after other slots already took keys.
  ASSERT_TRUE(enc->Encode(ex.data(), 1, &b).ok());
  const EncodedBatch before = b;
  const std::vector<Example> bad = {
      MakeExample({"bob", "i2", "c d", "7", "x3"}),  // dense age
      MakeExample({"bob", "i2", "c d", "1e", "3"}),  // price: dense and slots
      MakeExample({"bob", "i2", "c d", "nan", "3"}), MakeExample({"bob", "i2", "c d", "inf", "3"}),
      MakeExample({"bob", "i2", "c d", "7"}),  // too few values
  };
  for (const Example& e : bad) {
    EXPECT_EQ(enc->Append(e, &b).code(), StatusCode::kInvalidArgument) << e.values[3];
    ExpectSameBatch(b, before);
  }

  // A numeric slot failing after earlier slots (and its own first tokens)
  // appended keys: price_log2 made multi-valued, no dense feature on price.
  proto::FeatureConfig config = TestConfig();
  config.mutable_dense()->RemoveLast();
  config.mutable_slots(3)->set_multi_valued(true);
  auto enc2 = FeatureEncoder::Create(config, kColumns);
  ASSERT_TRUE(enc2.ok()) << enc2.status();
  EncodedBatch b2;
  ASSERT_TRUE((*enc2)->Encode(ex.data(), 1, &b2).ok());
  const EncodedBatch before2 = b2;
  st = (*enc2)->Append(MakeExample({"bob", "i2", "c d", "7 8 oops", "3"}), &b2);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("price_log2"), std::string::npos) << st;
  EXPECT_NE(st.message().find("'oops'"), std::string::npos) << st;
  ExpectSameBatch(b2, before2);

  // And a good example still appends.
  ASSERT_TRUE(enc->Append(MakeExample({"bob", "i2", "c d", "7", "3"}), &b).ok());
  EXPECT_EQ(b.size, 2);
  EXPECT_EQ(b.offsets[2].back(), 4u);
}

TEST(FeatureEncoderTest, AppendToEmptyBatchResetsShape) {
  auto enc = TestEncoder();
  ASSERT_NE(enc, nullptr);
  EncodedBatch b;  // default: no slots
  ASSERT_TRUE(enc->Append(MakeExample({"a", "i", "t", "1", "2"}), &b).ok());
  EXPECT_EQ(b.size, 1);
  EXPECT_EQ(b.num_slots(), 5);
  EXPECT_EQ(b.dense.size(), 2u);
}

TEST(FeatureEncoderTest, LabelColumnsGoToExtraLabelsNeverToFeatures) {
  const std::vector<std::string> columns = {"item", "label:buy", "label:fav"};
  proto::FeatureConfig config;
  config.add_slots()->set_name("item");
  auto enc = FeatureEncoder::Create(config, columns, {"label:fav", "label:buy"});
  ASSERT_TRUE(enc.ok()) << enc.status();
  Example a, b, bad;
  a.label = 1;
  a.values = {"x", "1", "0"};
  b.values = {"x", "0", "1"};
  EncodedBatch batch;
  ASSERT_TRUE((*enc)->Append(a, &batch).ok());
  ASSERT_TRUE((*enc)->Append(b, &batch).ok());
  ASSERT_EQ(batch.extra_labels.size(), 2u);
  EXPECT_EQ(batch.extra_labels[0], (std::vector<float>{0, 1}));  // label:fav
  EXPECT_EQ(batch.extra_labels[1], (std::vector<float>{1, 0}));  // label:buy
  EXPECT_EQ(batch.labels, (std::vector<float>{1, 0}));
  // Equal items, different label values: the same key, nothing else.
  ASSERT_EQ(batch.keys[0].size(), 2u);
  EXPECT_EQ(batch.keys[0][0], batch.keys[0][1]);
  // A malformed or missing label value fails the example, batch unchanged.
  for (const auto& values : std::vector<std::vector<std::string>>{
           {"x", "yes", "0"}, {"x", "", "0"}, {"x", "1", "0.5"}, {"x", "1"}}) {
    bad.values = values;
    Status st = (*enc)->Append(bad, &batch);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("label column 'label:"), std::string::npos) << st;
    EXPECT_EQ(batch.size, 2);
    EXPECT_EQ(batch.extra_labels[0].size(), 2u);
    EXPECT_EQ(batch.extra_labels[1].size(), 2u);
    EXPECT_EQ(batch.keys[0].size(), 2u);
  }
  batch.Reset(1, 0);
  EXPECT_TRUE(batch.extra_labels[0].empty());
  // Unknown label column, or a column that is not a label column.
  for (const std::string label : {"label:cart", "item"}) {
    auto e = FeatureEncoder::Create(config, columns, {label});
    ASSERT_FALSE(e.ok()) << label;
    EXPECT_NE(e.status().message().find("model.heads: label column '" + label + "'"),
              std::string::npos)
        << e.status();
  }
}

}  // namespace
}  // namespace freshet
