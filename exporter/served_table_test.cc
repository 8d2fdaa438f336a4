#include "exporter/served_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "common/half.h"

namespace freshet {
namespace {

using Rows = std::map<uint64_t, std::vector<float>>;

Rows Contents(const ServedTable& t) {
  Rows rows;
  t.ForEach([&](uint64_t key, const float* w) {
    EXPECT_EQ(rows.count(key), 0u) << "key " << key << " listed twice";
    rows[key].assign(w, w + t.dim());
  });
  EXPECT_EQ(rows.size(), t.size());
  return rows;
}

void ExpectMatches(const ServedTable& t, const Rows& want, const std::string& what) {
  ASSERT_EQ(t.size(), want.size()) << what;
  EXPECT_EQ(Contents(t), want) << what;
  std::vector<float> buf(t.dim());
  for (const auto& [key, row] : want) {
    ASSERT_TRUE(t.Lookup(key, buf.data())) << what << ": key " << key;
    EXPECT_EQ(buf, row) << what << ": key " << key;
    if (t.storage() == ServedTable::Storage::kFp32) {
      const float* p = t.Find(key);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(std::vector<float>(p, p + t.dim()), row);
    }
  }
}

TEST(ServedTableTest, EmptyTableMissesEverything) {
  ServedTable none;
  float out = 7;
  EXPECT_FALSE(none.Lookup(1, &out));
  EXPECT_EQ(out, 7);
  EXPECT_EQ(none.size(), 0u);
  ServedTable t(4);
  EXPECT_EQ(t.Find(1), nullptr);
  t.Apply(nullptr, 0, nullptr, nullptr, 0);
  EXPECT_EQ(t.size(), 0u);
  const uint64_t gone = 5;
  t.Apply(&gone, 1, nullptr, nullptr, 0);  // deleting an absent key
  EXPECT_EQ(t.size(), 0u);
}

TEST(ServedTableTest, BuildKeepsTheLastRowOfADuplicateKey) {
  ServedTable t(2);
  const std::vector<uint64_t> keys = {3, 9, 3};
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  t.Build(keys.data(), values.data(), keys.size());
  ExpectMatches(t, {{3, {5, 6}}, {9, {3, 4}}}, "build");
}

// Build (a counting sort by leaf) equals applying the same rows to an empty
// table, for many rows with repeats (several leaves, duplicates inside a
// leaf), in fp32 and fp16.
TEST(ServedTableTest, BuildEqualsApplyToAnEmptyTable) {
  std::mt19937_64 rng(7);
  for (auto storage : {ServedTable::Storage::kFp32, ServedTable::Storage::kFp16}) {
    const int dim = 3;
    std::vector<uint64_t> keys;
    std::vector<float> values;
    Rows model;
    for (int i = 0; i < 20000; ++i) {
      keys.push_back(rng() % 15000);
      for (int d = 0; d < dim; ++d) values.push_back(static_cast<float>(rng() % 512) / 4);
      model[keys.back()].assign(values.end() - dim, values.end());
    }
    ServedTable built(dim, storage), applied(dim, storage);
    built.Build(keys.data(), values.data(), keys.size());
    applied.Apply(nullptr, 0, keys.data(), values.data(), keys.size());
    ExpectMatches(built, model, "build");
    EXPECT_EQ(built.size(), applied.size());
    EXPECT_GT(built.leaf_bits(), 8);
    // A delta applies on top of a built table as on any other.
    const uint64_t gone = keys[0];
    const std::vector<uint64_t> up = {999999};
    const std::vector<float> row = {1, 2, 3};
    built.Apply(&gone, 1, up.data(), row.data(), 1);
    model.erase(gone);
    model[999999] = row;
    ExpectMatches(built, model, "build + delta");
  }
}

// StreamBuilder (count pass, then rows straight into leaves) builds what
// Build does: many rows with repeats (a key added twice keeps its last row,
// wherever the repeats fall in the batches), fp32 and fp16, rows split
// into uneven batches; a delta then applies on top as on any table.
TEST(ServedTableTest, StreamBuilderEqualsBuild) {
  std::mt19937_64 rng(11);
  for (auto storage : {ServedTable::Storage::kFp32, ServedTable::Storage::kFp16}) {
    const int dim = 5;
    std::vector<uint64_t> keys;
    std::vector<float> values;
    Rows model;
    for (int i = 0; i < 30000; ++i) {
      keys.push_back(rng() % 20000);
      for (int d = 0; d < dim; ++d) values.push_back(static_cast<float>(rng() % 512) / 4);
      model[keys.back()].assign(values.end() - dim, values.end());
    }
    ServedTable built(dim, storage);
    built.Build(keys.data(), values.data(), keys.size());
    ServedTable::StreamBuilder b(dim, storage, keys.size());
    for (size_t at = 0; at < keys.size(); at += 7001) {
      b.Count(keys.data() + at, std::min<size_t>(7001, keys.size() - at));
    }
    b.StartRows();
    for (size_t at = 0; at < keys.size(); at += 4093) {
      const size_t n = std::min<size_t>(4093, keys.size() - at);
      ASSERT_TRUE(b.Add(keys.data() + at, values.data() + at * dim, n).ok());
    }
    StatusOr<ServedTable> streamed = b.Finish();
    ASSERT_TRUE(streamed.ok()) << streamed.status();
    ExpectMatches(*streamed, model, "stream build");
    EXPECT_EQ(streamed->leaf_bits(), built.leaf_bits());
    EXPECT_EQ(streamed->payload_bytes(), built.payload_bytes());
    const uint64_t gone = keys[0];
    const std::vector<uint64_t> up = {999999};
    const std::vector<float> row = {1, 2, 3, 4, 5};
    streamed->Apply(&gone, 1, up.data(), row.data(), 1);
    model.erase(gone);
    model[999999] = row;
    ExpectMatches(*streamed, model, "stream build + delta");
  }
}

// Rows that differ between the passes (a file changed under the loader)
// are refused, never built into a table with holes or overruns.
TEST(ServedTableTest, StreamBuilderRefusesPassesThatDisagree) {
  const std::vector<uint64_t> keys = {1, 2, 3, 4};
  const std::vector<float> values = {1, 2, 3, 4};
  {
    ServedTable::StreamBuilder b(1, ServedTable::Storage::kFp32, 4);
    b.Count(keys.data(), 3);
    b.StartRows();
    ASSERT_TRUE(b.Add(keys.data(), values.data(), 3).ok());
    const uint64_t extra = 3;  // a row more for a leaf that is full
    Status st = b.Add(&extra, values.data(), 1);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st;
  }
  {
    ServedTable::StreamBuilder b(1, ServedTable::Storage::kFp32, 4);
    b.Count(keys.data(), 4);
    b.StartRows();
    ASSERT_TRUE(b.Add(keys.data(), values.data(), 3).ok());
    StatusOr<ServedTable> t = b.Finish();
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(t.status().message().find("4"), std::string::npos) << t.status();
  }
}

// Random deltas against a std::map model, keeping every version: applying a
// delta to a copy must leave every older version exactly as it was (the
// copy-on-write contract readers rely on), across re-bucketing.
TEST(ServedTableTest, VersionsAreIndependentUnderRandomDeltas) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    std::mt19937_64 rng(seed);
    const int dim = 1 + static_cast<int>(rng() % 5);
    const uint64_t keyspace = seed % 2 == 0 ? 300 : 50000;  // dense deletes vs. growth
    std::vector<ServedTable> versions;
    std::vector<Rows> models;
    ServedTable t(dim);
    Rows model;
    {
      std::vector<uint64_t> keys;
      std::vector<float> values;
      for (int i = 0; i < 200; ++i) {
        keys.push_back(rng() % keyspace);
        for (int d = 0; d < dim; ++d) values.push_back(static_cast<float>(rng() % 1000));
        model[keys.back()].assign(values.end() - dim, values.end());
      }
      t.Build(keys.data(), values.data(), keys.size());
    }
    ExpectMatches(t, model, "full");
    for (int v = 0; v < 40; ++v) {
      versions.push_back(t);  // a reader keeps this version
      models.push_back(model);
      std::vector<uint64_t> deleted, keys;
      std::vector<float> values;
      const int nd = static_cast<int>(rng() % 60), nu = static_cast<int>(rng() % 2000);
      for (int i = 0; i < nd; ++i) {
        // Mostly live keys, some absent ones.
        if (!model.empty() && rng() % 4 != 0) {
          auto it = model.lower_bound(rng() % keyspace);
          if (it == model.end()) it = model.begin();
          deleted.push_back(it->first);
        } else {
          deleted.push_back(rng() % keyspace);
        }
      }
      for (uint64_t k : deleted) model.erase(k);
      for (int i = 0; i < nu; ++i) {
        keys.push_back(rng() % keyspace);
        for (int d = 0; d < dim; ++d) values.push_back(static_cast<float>(v * 1000 + i));
        model[keys.back()].assign(values.end() - dim, values.end());
      }
      t.Apply(deleted.data(), deleted.size(), keys.data(), values.data(), keys.size());
      ExpectMatches(t, model, "seed " + std::to_string(seed) + " version " + std::to_string(v));
    }
    for (size_t i = 0; i < versions.size(); ++i) {
      ExpectMatches(versions[i], models[i], "old version " + std::to_string(i));
    }
    if (keyspace > 1000) {
      EXPECT_GT(t.leaf_bits(), 4) << "the table never re-bucketed";
    }
  }
}

TEST(ServedTableTest, SixteenBitStorageHoldsHalfTheBytesAndRoundTripsExactly) {
  const int dim = 8;
  std::vector<uint64_t> keys;
  std::vector<float> values;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 0.1f);
  for (uint64_t k = 0; k < 1000; ++k) {
    keys.push_back(k * 7919);
    // Values as a fp16 server holds them: already representable.
    for (int d = 0; d < dim; ++d) values.push_back(HalfToFloat(FloatToHalf(normal(rng))));
  }
  ServedTable f32(dim), f16(dim, ServedTable::Storage::kFp16);
  f32.Build(keys.data(), values.data(), keys.size());
  f16.Build(keys.data(), values.data(), keys.size());
  EXPECT_EQ(Contents(f16), Contents(f32));
  EXPECT_EQ(f32.payload_bytes(), 1000 * (8 + dim * 4));
  EXPECT_EQ(f16.payload_bytes(), 1000 * (8 + dim * 2));
  // Overhead beyond keys and rows stays small (leaf headers, mids, root).
  EXPECT_LT(f16.allocated_bytes(), f16.payload_bytes() * 5 / 4);
}

TEST(ServedTableTest, ApplyCopiesOnlyWhatItTouches) {
  const int dim = 16;
  std::vector<uint64_t> keys(200000);
  std::vector<float> values(keys.size() * dim, 1.0f);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = i * 2654435761u;
  ServedTable base(dim);
  base.Build(keys.data(), values.data(), keys.size());
  ServedTable next = base;  // shares everything
  const std::vector<uint64_t> changed = {keys[5], keys[77777], 12345};
  const std::vector<float> rows(changed.size() * dim, 2.0f);
  next.Apply(nullptr, 0, changed.data(), rows.data(), changed.size());
  EXPECT_EQ(next.size(), base.size() + 1);
  float out[dim];
  ASSERT_TRUE(base.Lookup(keys[5], out));
  EXPECT_EQ(out[0], 1.0f);
  ASSERT_TRUE(next.Lookup(keys[5], out));
  EXPECT_EQ(out[0], 2.0f);
  EXPECT_FALSE(base.contains(12345));
  // The two versions share all but the touched leaves and mids: the new
  // version's own bytes (leaves it does not share) are a few leaves.
  int64_t shared_leaf_rows = 0;
  base.ForEach([&](uint64_t key, const float*) {
    if (next.Find(key) == base.Find(key)) ++shared_leaf_rows;
  });
  EXPECT_GT(shared_leaf_rows, static_cast<int64_t>(keys.size()) - 3 * 64);
}

// Readers in several threads score against whatever version is current
// while a writer applies deltas and publishes each new version: every row a
// reader sees is whole (all of a row's values come from one delta), and the
// versions a reader sees never go backwards.
TEST(ServedTableTest, ConcurrentReadersNeverSeeTornRowsOrOlderVersions) {
  const int dim = 8;
  const uint64_t keyspace = 20000;
  std::vector<uint64_t> keys(keyspace);
  for (uint64_t k = 0; k < keyspace; ++k) keys[k] = k;
  std::vector<float> values(keyspace * dim, 0.0f);  // version 0
  auto current = std::make_shared<const ServedTable>([&] {
    ServedTable t(dim);
    t.Build(keys.data(), values.data(), keys.size());
    return t;
  }());
  std::mutex mu;  // guards the pointer swap only (ModelWatcher's shape)
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reads{0}, failures{0};
  auto reader = [&](uint32_t seed) {
    std::mt19937_64 rng(seed);
    float last_version = 0;
    float row[dim];
    while (!stop.load()) {
      std::shared_ptr<const ServedTable> t;
      {
        std::lock_guard<std::mutex> lock(mu);
        t = current;
      }
      float version_seen = -1;
      for (int i = 0; i < 64; ++i) {
        const uint64_t key = rng() % keyspace;
        if (!t->Lookup(key, row)) {
          failures++;
          continue;
        }
        for (int d = 1; d < dim; ++d) {
          if (row[d] != row[0]) failures++;  // torn row
        }
        version_seen = std::max(version_seen, row[0]);
      }
      // Row values are the delta number that wrote them; the table's max
      // over a sample can't exceed the newest version, and a later table
      // never holds older rows than an earlier one for the same key.
      if (version_seen >= 0 && t->Find(0) != nullptr) {
        const float v0 = t->Find(0)[0];  // key 0 is rewritten by every delta
        if (v0 < last_version) failures++;
        last_version = v0;
      }
      reads++;
    }
  };
  std::vector<std::thread> readers;
  for (uint32_t i = 0; i < 3; ++i) readers.emplace_back(reader, i + 1);
  std::mt19937_64 rng(99);
  for (int v = 1; v <= 300; ++v) {
    std::vector<uint64_t> ks = {0};
    for (int i = 0; i < 500; ++i) ks.push_back(rng() % keyspace);
    std::vector<float> vals(ks.size() * dim, static_cast<float>(v));
    ServedTable next = *current;
    next.Apply(nullptr, 0, ks.data(), vals.data(), ks.size());
    auto published = std::make_shared<const ServedTable>(std::move(next));
    std::lock_guard<std::mutex> lock(mu);
    current = std::move(published);
  }
  while (reads.load() < 300) std::this_thread::yield();
  stop = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(current->Find(0)[0], 300.0f);
}

}  // namespace
}  // namespace freshet
