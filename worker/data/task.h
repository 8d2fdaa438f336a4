// Tasks: named recipes that turn a public dataset into example files, as
// defined in ../shared/README.md ("Real-data tasks"): which rows become
// examples, their labels, features, and the train/holdout split by time.
//
//   taobao-conversion  Taobao UserBehavior files
//   retail-purchase    UCI Online Retail CSV
//   talkingdata-ctr    TalkingData AdTracking sample
//
// BuildTask reads the raw files with the format readers
// (worker/data/raw_readers.h), counting and skipping bad records under the
// policy, and writes `out_dir/train.examples` and `out_dir/holdout.examples`
// (time-ordered, atomic) plus `out_dir/task_info.txt` (counts, bad records
// per file, the split time). Deterministic: the same inputs give
// byte-identical outputs (fixed seeds for sampled negatives).
//
// Conventions of all tasks. Times are unix seconds and calendar features
// (hour, month, day of week) are taken in UTC. Events are ordered by a
// stable sort on time, so equal times keep file order. "Strictly before" an
// event means at an earlier time: events at the same second never see each
// other in their history features. Single-valued values are tokens (spaces
// inside raw values become '_'); multi-valued columns hold space-separated
// tokens, most recent first, possibly none. The example's `user` field is the
// user / customer / ip id (for GAUC); `oracle` is unknown (empty).
// "Time split at 80%": with the n examples in time order, T is the time of
// example floor(0.8 n) (0-based); train is every example with time < T and
// holdout every example with time >= T, so examples sharing a second are
// never split and the holdout is the last 20% plus the ties at T.
//
// taobao-conversion. Inputs: taobao/UserBehavior_time_slice.csv and
//   taobao/UserBehavior_815_users.csv. The two files overlap (59 users of
//   the 815 also occur in the time slice, whose rows for them all reappear
//   in the 815-user file), so they are combined as a union with duplicates
//   removed: after the stable time sort (time slice first), a row of the
//   second file identical in all five fields to a not yet matched row of
//   the first file at the same second is dropped. Rows repeated within one
//   file are kept (two events). Every pv is an example, label 1 iff the same
//   user has a cart, fav or buy on the same item at a time in
//   [t, t + 86400] (either file). Columns: user, item, category, hour,
//   recent_items and recent_categories (the items and categories of the
//   user's last 10 events of any behavior strictly before t, repeats kept),
//   event_count_bucket (floor(log2(1 + number of the user's events strictly
//   before t))), and the label column label:buy (model/example.h): 1 iff
//   the user buys the item in [t, t + 86400] (the conversion head of a
//   multi-task model; a buy is also a positive of the main label). Split:
//   time split at 80%.
//
// retail-purchase. Input: online_retail/online_retail_to_2011-11-25.csv.
//   Kept rows: a CustomerID, an InvoiceNo not starting with 'C', Quantity >
//   0. An invoice is one event at the earliest InvoiceDate of its kept rows;
//   invoices are processed in time order. Each distinct (invoice, StockCode)
//   is a positive (its first row gives description and price). "Seen" items
//   are the StockCodes of kept rows at times strictly before the invoice.
//   Per positive, 4 distinct negatives are drawn uniformly (seed 1) from the
//   seen items not in the invoice (all of them when there are at most 4).
//   Columns: customer, item, country, price_bucket (floor(log2(UnitPrice))
//   as an integer token, "nonpositive" for a price <= 0), description_tokens
//   (the distinct lower-cased [a-z0-9]+ words of the description, in order),
//   recent_items (the StockCodes of the customer's last 20 positives
//   strictly before the invoice), month (1-12), day_of_week (0 = Sunday),
//   hour. A negative carries the negative item's own description and price
//   as last seen strictly before the invoice, and the invoice's customer,
//   country and time. Each positive is followed by its negatives in the
//   files. Split: invoices at or after 2011-11-12 00:00:00 are the holdout.
//   Ranking file: `out_dir/holdout_ranking.examples` (same columns) holds,
//   for each holdout positive, a group of 100 consecutive lines: the
//   positive first (label 1), then 99 distinct negatives (label 0) drawn
//   uniformly (seed 2) from the seen items not in the invoice. To compute
//   HR@10 / NDCG@10, score each group of 100 lines and rank the first line
//   among them. Positives with fewer than 99 candidates get no group
//   (counted in task_info.txt; none in the real data).
//
// talkingdata-ctr. Input: talkingdata/train_sample.csv. Every row is an
//   example, label is_attributed, time click_time, user ip. Columns: ip,
//   app, device, os, channel, hour, app_x_channel ("<app>_<channel>"),
//   os_x_device ("<os>_<device>"). Split: time split at 80%.
//
// Thread safety: free functions; no shared state.
#pragma once

#include <string>
#include <vector>

#include "common/proto/job.pb.h"
#include "common/status.h"
#include "worker/data/example_io.h"

namespace freshet {

struct TaskOutput {
  std::string train_file;
  std::string holdout_file;
  std::vector<std::string> columns;
  int64_t train_examples = 0;
  int64_t holdout_examples = 0;
  int64_t train_positives = 0;
  int64_t holdout_positives = 0;
  int64_t bad_records = 0;  // over all raw input files
};

// Names of the tasks BuildTask knows.
std::vector<std::string> TaskNames();

// The raw input files of `task` under `data_dir` (normally ../shared/data).
StatusOr<std::vector<std::string>> TaskInputs(const std::string& task, const std::string& data_dir);

// Builds the task's example files into out_dir (created if missing).
// InvalidArgument for an unknown task (listing the known ones); NotFound for
// missing inputs; the reader's error past the bad-record limit.
StatusOr<TaskOutput> BuildTask(const std::string& task, const std::string& data_dir,
                               const std::string& out_dir, const BadRecordPolicy& policy);

// The default FeatureConfig, TablesConfig and column names for a task's
// examples (what cluster-configs/jobs/<task>.pbtxt uses): one slot per
// feature column (label columns are not features).
StatusOr<proto::FeatureConfig> TaskFeatures(const std::string& task);

// The columns of the example files BuildTask writes for `task` (label
// columns included); empty for an unknown task.
std::vector<std::string> TaskExampleColumns(const std::string& task);

// Item-popularity baseline: scores each holdout example by the smoothed
// positive rate of its item in the training file: (pos_item + a) / (n_item +
// a / p) with p the global positive rate and a = 1 (unseen items score p).
// `item_column` names the item column. Returns one score per holdout
// example, in file order.
StatusOr<std::vector<float>> ItemPopularityScores(const std::string& train_file,
                                                  const std::string& holdout_file,
                                                  const std::string& item_column);

}  // namespace freshet
