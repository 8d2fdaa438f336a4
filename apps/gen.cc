// freshet_gen: writes the synthetic shop (worker/data/synthetic_shop.h),
// freshet's embedded default dataset, as example files:
//   <out_dir>/train.examples, <out_dir>/holdout.examples, <out_dir>/shop_info.txt
// Prints a summary with the oracle AUC (the best any model can reach) and, as
// its last line, a JSON object with the counts and oracle AUCs. Exits 1 with
// the error on a bad flag or an I/O failure.
#include <gflags/gflags.h>

#include <cstdio>
#include <string>

#include "worker/data/synthetic_shop.h"

namespace {
const freshet::ShopConfig kDefaults;
}  // namespace

DEFINE_string(out_dir, "out/synthetic", "directory for the example files (created if missing)");
DEFINE_uint64(seed, kDefaults.seed, "world and event seed; the same flags give identical files");
DEFINE_int32(users, kDefaults.num_users, "number of users");
DEFINE_int32(items, kDefaults.num_items, "number of items");
DEFINE_int32(categories, kDefaults.num_categories, "number of item categories");
DEFINE_int32(latent_dim, kDefaults.latent_dim, "dimension of the hidden user/item vectors");
DEFINE_int64(requests, kDefaults.num_requests, "searches and browses (each shows --slate items)");
DEFINE_int32(slate, kDefaults.slate_size, "impressions (positions) per request");
DEFINE_double(search_fraction, kDefaults.search_fraction, "share of requests that are searches");
DEFINE_int64(start_time, kDefaults.start_time, "unix time of the first possible request");
DEFINE_double(days, static_cast<double>(kDefaults.duration_s) / 86400.0,
              "days of event time the requests span");
DEFINE_double(drift_period_hours, static_cast<double>(kDefaults.drift_period_s) / 3600.0,
              "hours between changes of the trending category");
DEFINE_double(preference_tau_days, kDefaults.preference_tau_s / 86400.0,
              "time constant of the users' taste drift in days; 0: no drift");
DEFINE_double(holdout_fraction, kDefaults.holdout_fraction,
              "share of the requests (the latest) written to holdout.examples");
DEFINE_string(label, freshet::ShopLabelName(kDefaults.label), "label: click or purchase");

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "writes the synthetic shop dataset: <out_dir>/{train,holdout}.examples and "
      "shop_info.txt, and prints its oracle AUC");
  gflags::ParseCommandLineFlags(&argc, &argv, true);

  freshet::ShopConfig config;
  config.seed = FLAGS_seed;
  config.num_users = FLAGS_users;
  config.num_items = FLAGS_items;
  config.num_categories = FLAGS_categories;
  config.latent_dim = FLAGS_latent_dim;
  config.num_requests = FLAGS_requests;
  config.slate_size = FLAGS_slate;
  config.search_fraction = FLAGS_search_fraction;
  config.start_time = FLAGS_start_time;
  config.duration_s = static_cast<int64_t>(FLAGS_days * 86400.0);
  config.drift_period_s = static_cast<int64_t>(FLAGS_drift_period_hours * 3600.0);
  config.preference_tau_s = FLAGS_preference_tau_days * 86400.0;
  config.holdout_fraction = FLAGS_holdout_fraction;
  auto label = freshet::ParseShopLabel(FLAGS_label);
  if (!label.ok()) {
    std::fprintf(stderr, "freshet_gen: --label: %s\n", label.status().ToString().c_str());
    return 1;
  }
  config.label = *label;

  auto summary = freshet::WriteSyntheticShop(config, FLAGS_out_dir);
  if (!summary.ok()) {
    std::fprintf(stderr, "freshet_gen: %s\n", summary.status().ToString().c_str());
    return 1;
  }
  const freshet::ShopSummary& s = *summary;
  auto rate = [](int64_t pos, int64_t n) {
    return n > 0 ? static_cast<double>(pos) / static_cast<double>(n) : 0.0;
  };
  std::printf("synthetic shop (label %s, seed %llu) in %.2f s\n",
              freshet::ShopLabelName(config.label), static_cast<unsigned long long>(config.seed),
              s.seconds);
  std::printf("  train:   %s  %lld examples, %lld positives (%.4f), mean oracle %.4f\n",
              s.train_file.c_str(), static_cast<long long>(s.train_examples),
              static_cast<long long>(s.train_positives), rate(s.train_positives, s.train_examples),
              s.train_mean_oracle);
  std::printf("  holdout: %s  %lld examples, %lld positives (%.4f), mean oracle %.4f\n",
              s.holdout_file.c_str(), static_cast<long long>(s.holdout_examples),
              static_cast<long long>(s.holdout_positives),
              rate(s.holdout_positives, s.holdout_examples), s.holdout_mean_oracle);
  std::printf("  info:    %s\n", s.info_file.c_str());
  std::printf("oracle AUC (train): %.4f\n", s.oracle_auc_train);
  std::printf("oracle AUC (holdout): %.4f\n", s.oracle_auc_holdout);
  std::printf("%s\n", freshet::ShopSummaryJson(s).c_str());
  return 0;
}
