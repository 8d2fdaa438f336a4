// Evaluation metrics for binary CTR/conversion models.
//
//   AUC      area under the ROC curve; ties in score count half (average
//            ranks). Undefined (NaN) without both labels.
//   LogLoss  mean binary cross-entropy of probabilities, clipped to
//            [1e-7, 1 - 1e-7].
//   GAUC     per-user AUC averaged with impression weights, over users that
//            have both a positive and a negative example.
//   Ranking  HR@K and NDCG@K for groups of one positive plus negatives.
//
// Thread safety: free functions are pure. WindowAuc and MetricSet are not
// thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace freshet {

double Auc(const std::vector<float>& scores, const std::vector<float>& labels);
double MeanLogLoss(const std::vector<float>& probs, const std::vector<float>& labels);
// Returns NaN if no user has both labels; *users_counted gets how many had.
double Gauc(const std::vector<float>& scores, const std::vector<float>& labels,
            const std::vector<uint64_t>& users, int64_t* users_counted = nullptr);

// Groups of `group_size` consecutive scores whose first entry is the
// positive: HR@k = share of groups whose positive ranks in the top k;
// NDCG@k = mean of 1/log2(rank + 1) for those (rank 1-based; ties count
// against the positive).
void RankingMetrics(const std::vector<float>& scores, int group_size, int k, double* hr,
                    double* ndcg);

// AUC over the last `window` examples seen (progressive validation).
class WindowAuc {
 public:
  explicit WindowAuc(size_t window) : window_(window) {}
  void Add(float score, float label);
  double Value() const;
  size_t count() const { return scores_.size(); }

 private:
  size_t window_;
  std::deque<float> scores_, labels_;
};

// Scores, labels and users of an evaluation set, and all metrics over them.
struct EvalResult {
  int64_t examples = 0;
  int64_t positives = 0;
  double auc = 0, logloss = 0, gauc = 0, oracle_auc = -1;
  int64_t gauc_users = 0;
  std::string ToJsonFields(const std::string& prefix) const;  // "\"<p>auc\":0.7,..."
};

// v with 5 decimals, or null for NaN (JSON has no NaN).
std::string JsonNumber(double v);

EvalResult Evaluate(const std::vector<float>& probs, const std::vector<float>& labels,
                    const std::vector<uint64_t>& users, const std::vector<float>& oracle);

}  // namespace freshet
