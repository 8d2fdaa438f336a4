#include "serving/scorer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "model/features.h"
#include "model/model.h"
#include "serving/internal/testing.h"
#include "worker/job.h"

namespace freshet {
namespace {

using serving_testing::FullSnapshot;
using serving_testing::RandomExamples;
using serving_testing::RandomState;
using serving_testing::ReferenceScores;
using serving_testing::State;
using serving_testing::TempDir;
using serving_testing::TinyJob;

// Re-aligns examples' values from columns `from` to columns `to`.
std::vector<Example> Reorder(const std::vector<Example>& in, const std::vector<std::string>& from,
                             const std::vector<std::string>& to) {
  std::vector<Example> out = in;
  for (size_t i = 0; i < in.size(); ++i) {
    out[i].values.clear();
    for (const std::string& c : to) {
      const auto it = std::find(from.begin(), from.end(), c);
      out[i].values.push_back(it == from.end() ? "" : in[i].values[it - from.begin()]);
    }
  }
  return out;
}

std::shared_ptr<const LoadedExport> Publish(const std::string& dir, const proto::JobConfig& job,
                                            const State& state) {
  auto writer = ExportWriter::Open(dir, job, 2);
  EXPECT_TRUE(writer.ok()) << writer.status();
  EXPECT_TRUE((*writer)->Publish(FullSnapshot(job, state, 1)).ok());
  auto loaded = LoadLatestExport(dir);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return *loaded;
}

// The column order of an example file in these tests: deliberately not the
// scorer's.
const std::vector<std::string> kFileColumns = {"age", "tags", "price", "query", "item", "user"};

TEST(ScorerTest, ColumnsAreSlotsThenDenseEachOnce) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(1);
  const auto examples = RandomExamples(kFileColumns, 10, &rng);
  auto scorer =
      Scorer::Create(Publish(dir.path(), job, RandomState(job, kFileColumns, examples, 0.5, &rng)));
  ASSERT_TRUE(scorer.ok()) << scorer.status();
  const std::vector<std::string> want = {"user", "item", "query", "tags", "price", "age"};
  EXPECT_EQ((*scorer)->columns(), want);
  EXPECT_EQ((*scorer)->ColumnIndex("price"), 4);
  EXPECT_EQ((*scorer)->ColumnIndex("price_bucket"), -1);  // a slot name, not a column
  EXPECT_TRUE((*scorer)->IsMultiValued(2));
  EXPECT_TRUE((*scorer)->IsMultiValued(3));
  EXPECT_FALSE((*scorer)->IsMultiValued(4));
  EXPECT_EQ((*scorer)->version(), 1u);
}

void ExpectParity(const proto::JobConfig& job, uint32_t seed) {
  TempDir dir;
  std::mt19937 rng(seed);
  const auto examples = RandomExamples(kFileColumns, 300, &rng);
  const State state = RandomState(job, kFileColumns, examples, 0.6, &rng);
  const auto loaded = Publish(dir.path(), job, state);
  auto scorer = Scorer::Create(loaded);
  ASSERT_TRUE(scorer.ok()) << scorer.status();

  // The test really covers both paths: keys with rows and keys without.
  auto encoder = FeatureEncoder::Create(job.features(), kFileColumns);
  ASSERT_TRUE(encoder.ok());
  EncodedBatch batch;
  ASSERT_TRUE((*encoder)->Encode(examples.data(), static_cast<int>(examples.size()), &batch).ok());
  int64_t found = 0, missing = 0, multi = 0;
  for (const auto& keys : batch.keys) {
    for (uint64_t k : keys) (loaded->tables.at("emb").Find(k) != nullptr ? found : missing)++;
  }
  for (int i = 0; i < batch.size; ++i) multi += batch.offsets[2][i + 1] - batch.offsets[2][i] > 1;
  EXPECT_GT(found, 100);
  EXPECT_GT(missing, 100);
  EXPECT_GT(multi, 20);

  auto want = ReferenceScores(job, state, kFileColumns, examples, dir.path());
  ASSERT_TRUE(want.ok()) << want.status();
  std::vector<float> got;
  ASSERT_TRUE((*scorer)->Score(Reorder(examples, kFileColumns, (*scorer)->columns()), &got).ok());
  ASSERT_EQ(got.size(), want->size());
  float lo = 1, hi = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], (*want)[i], 1e-5) << "example " << i;
    lo = std::min(lo, got[i]);
    hi = std::max(hi, got[i]);
  }
  EXPECT_GT(hi - lo, 0.05) << "scores barely vary: the test would not notice wrong rows";
  // Serving never inserts the keys it initialized.
  EXPECT_EQ(loaded->tables.at("emb").size(), state.rows.at("emb").size());
}

TEST(ScorerTest, MatchesTrainerForwardPassDeepFm) { ExpectParity(TinyJob(), 2); }

TEST(ScorerTest, MatchesTrainerForwardPassLr) {
  proto::JobConfig job = TinyJob();
  job.mutable_model()->set_kind(proto::ModelConfig::LR);
  ExpectParity(job, 3);
}

// Every LAYERED part: first order, FM, FFM (a third table per slot), a
// cross layer beside an MLP, and target attention of the multi-valued
// query slot against item.
TEST(ScorerTest, MatchesTrainerForwardPassLayered) {
  proto::JobConfig job = TinyJob();
  auto* ffm = job.mutable_tables()->add_tables();
  *ffm = job.tables().tables(1);
  ffm->set_name("ffm");
  ffm->set_dim(5 * 2);  // 5 slots x k = 2
  proto::ModelConfig* m = job.mutable_model();
  m->set_kind(proto::ModelConfig::LAYERED);
  m->set_first_order(true);
  m->add_interactions(proto::ModelConfig::FM);
  m->add_interactions(proto::ModelConfig::FFM);
  m->add_interactions(proto::ModelConfig::CROSS);
  m->set_cross_layers(1);
  m->set_ffm_table("ffm");
  m->mutable_attention()->set_sequence_slot("query");
  m->mutable_attention()->set_query_slot("item");
  m->mutable_attention()->add_hidden(4);
  ASSERT_TRUE(ValidateJobConfig(&job, "layered").ok()) << ValidateJobConfig(&job, "layered");
  ExpectParity(job, 4);
}

// No first order (no wide table read), a slot without an embedding, stacked
// cross + MLP.
TEST(ScorerTest, MatchesTrainerForwardPassLayeredWithoutFirstOrder) {
  proto::JobConfig job = TinyJob();
  job.mutable_features()->mutable_slots(3)->clear_table();  // tags: no embedding
  proto::ModelConfig* m = job.mutable_model();
  m->set_kind(proto::ModelConfig::LAYERED);
  m->clear_wide_table();
  m->add_interactions(proto::ModelConfig::CROSS);
  m->set_cross_layers(2);
  m->set_cross_mode(proto::ModelConfig::STACKED);
  ASSERT_TRUE(ValidateJobConfig(&job, "layered").ok()) << ValidateJobConfig(&job, "layered");
  auto tables = JobModelTables(job);
  ASSERT_TRUE(tables.ok());
  EXPECT_EQ(tables->wide, -1);
  EXPECT_EQ(tables->emb[3], -1);
  ExpectParity(job, 5);
}

// A multi-task (ESMM) model: serving returns p_ctcvr = p_ctr * p_cvr (the
// last head) or, with serving_head, the named head's probability; both
// equal the trainer's.
TEST(ScorerTest, MatchesTrainerForwardPassEsmm) {
  proto::JobConfig job = TinyJob();
  proto::ModelConfig* m = job.mutable_model();
  m->set_kind(proto::ModelConfig::LAYERED);
  m->set_first_order(true);
  m->add_interactions(proto::ModelConfig::FM);
  proto::HeadConfig* ctr = m->add_heads();
  ctr->set_name("ctr");
  ctr->add_hidden(3);
  proto::HeadConfig* ctcvr = m->add_heads();
  ctcvr->set_name("ctcvr");
  ctcvr->set_label("label:buy");
  ctcvr->set_multiply_by("ctr");
  ctcvr->add_hidden(4);
  ASSERT_TRUE(ValidateJobConfig(&job, "esmm").ok()) << ValidateJobConfig(&job, "esmm");
  ExpectParity(job, 6);
  m->set_serving_head("ctr");
  ExpectParity(job, 7);
}

TEST(ScorerTest, ConcurrentCallsMatchSequentialOnes) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(4);
  auto scorer_or = Scorer::Create(
      Publish(dir.path(), job,
              RandomState(job, kFileColumns, RandomExamples(kFileColumns, 100, &rng), 0.5, &rng)),
      Scorer::Options{4});
  ASSERT_TRUE(scorer_or.ok()) << scorer_or.status();
  const Scorer& scorer = **scorer_or;
  std::vector<std::vector<Example>> batches;
  std::vector<std::vector<float>> want;
  for (int b = 0; b < 16; ++b) {
    batches.push_back(RandomExamples(scorer.columns(), 1 + b * 7, &rng));
    want.emplace_back();
    ASSERT_TRUE(scorer.Score(batches.back(), &want.back()).ok());
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> got;
      for (int r = 0; r < 40; ++r) {
        const size_t b = (t * 5 + r) % batches.size();
        if (!scorer.Score(batches[b], &got).ok() || got != want[b]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_LE(scorer.models_created(), 8);  // the pool is reused
}

TEST(ScorerTest, BadValueNamesTheExampleAndColumn) {
  TempDir dir;
  const proto::JobConfig job = TinyJob();
  std::mt19937 rng(5);
  auto scorer = Scorer::Create(
      Publish(dir.path(), job,
              RandomState(job, kFileColumns, RandomExamples(kFileColumns, 10, &rng), 0.5, &rng)));
  ASSERT_TRUE(scorer.ok());
  auto examples = RandomExamples((*scorer)->columns(), 3, &rng);
  examples[1].values[(*scorer)->ColumnIndex("price")] = "cheap";
  std::vector<float> probs;
  Status st = (*scorer)->Score(examples, &probs);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("examples[1]"), std::string::npos) << st;
  EXPECT_NE(st.message().find("price"), std::string::npos) << st;
  // A wrong number of values is an error too, not a crash.
  examples[1].values.pop_back();
  EXPECT_EQ((*scorer)->Score(examples, &probs).code(), StatusCode::kInvalidArgument);
  // And the scorer still works afterwards.
  examples = RandomExamples((*scorer)->columns(), 3, &rng);
  EXPECT_TRUE((*scorer)->Score(examples, &probs).ok());
  EXPECT_EQ(probs.size(), 3u);
}

TEST(ScorerTest, RejectsExportsThatDoNotFitTheirJob) {
  auto good = std::make_shared<LoadedExport>();
  good->manifest.set_version(7);
  *good->manifest.mutable_job() = TinyJob();
  for (const auto& t : good->manifest.job().tables().tables()) {
    good->tables[t.name()] = LoadedTable(static_cast<int>(t.dim()));
  }
  {
    // The right dense length, taken from a scorer's failure message would be
    // fragile; instead check that a wrong length fails and names both sizes.
    auto bad = std::make_shared<LoadedExport>(*good);
    bad->dense.assign(3, 0.0f);
    auto s = Scorer::Create(bad);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kDataLoss) << s.status();
    EXPECT_NE(s.status().message().find("dense"), std::string::npos) << s.status();
  }
  {
    auto bad = std::make_shared<LoadedExport>(*good);
    bad->tables["emb"] = LoadedTable(8);
    auto s = Scorer::Create(bad);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kDataLoss) << s.status();
    EXPECT_NE(s.status().message().find("'emb'"), std::string::npos) << s.status();
  }
  {
    auto bad = std::make_shared<LoadedExport>(*good);
    bad->manifest.mutable_job()->mutable_model()->set_wide_table("nope");
    auto s = Scorer::Create(bad);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << s.status();
  }
}

}  // namespace
}  // namespace freshet
