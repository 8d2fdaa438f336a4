#include "worker/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace freshet {

double Auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  const size_t n = scores.size();
  std::vector<uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) { return scores[a] < scores[b]; });
  double rank_sum = 0;  // sum of (1-based, tie-averaged) ranks of positives
  int64_t pos = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && scores[idx[j]] == scores[idx[i]]) ++j;
    const double avg_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t k = i; k < j; ++k) {
      if (labels[idx[k]] > 0.5f) {
        rank_sum += avg_rank;
        ++pos;
      }
    }
    i = j;
  }
  const int64_t neg = static_cast<int64_t>(n) - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - static_cast<double>(pos) * (pos + 1) / 2.0) /
         (static_cast<double>(pos) * static_cast<double>(neg));
}

double MeanLogLoss(const std::vector<float>& probs, const std::vector<float>& labels) {
  if (probs.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double p = std::min(std::max(static_cast<double>(probs[i]), 1e-7), 1 - 1e-7);
    sum -= labels[i] > 0.5f ? std::log(p) : std::log(1 - p);
  }
  return sum / probs.size();
}

double Gauc(const std::vector<float>& scores, const std::vector<float>& labels,
            const std::vector<uint64_t>& users, int64_t* users_counted) {
  std::unordered_map<uint64_t, std::vector<uint32_t>> by_user;
  for (size_t i = 0; i < users.size(); ++i) by_user[users[i]].push_back(static_cast<uint32_t>(i));
  double weighted = 0, weight = 0;
  int64_t counted = 0;
  std::vector<float> s, l;
  for (const auto& [user, idx] : by_user) {
    s.clear();
    l.clear();
    for (uint32_t i : idx) {
      s.push_back(scores[i]);
      l.push_back(labels[i]);
    }
    const double auc = Auc(s, l);
    if (std::isnan(auc)) continue;
    weighted += auc * idx.size();
    weight += idx.size();
    ++counted;
  }
  if (users_counted) *users_counted = counted;
  return counted ? weighted / weight : std::numeric_limits<double>::quiet_NaN();
}

void RankingMetrics(const std::vector<float>& scores, int group_size, int k, double* hr,
                    double* ndcg) {
  const size_t groups = scores.size() / group_size;
  double hits = 0, gain = 0;
  for (size_t g = 0; g < groups; ++g) {
    const float* s = scores.data() + g * group_size;
    int rank = 1;
    for (int j = 1; j < group_size; ++j) rank += s[j] >= s[0] ? 1 : 0;
    if (rank <= k) {
      hits += 1;
      gain += 1.0 / std::log2(rank + 1.0);
    }
  }
  *hr = groups ? hits / groups : std::numeric_limits<double>::quiet_NaN();
  *ndcg = groups ? gain / groups : std::numeric_limits<double>::quiet_NaN();
}

void WindowAuc::Add(float score, float label) {
  scores_.push_back(score);
  labels_.push_back(label);
  if (scores_.size() > window_) {
    scores_.pop_front();
    labels_.pop_front();
  }
}

double WindowAuc::Value() const {
  return Auc(std::vector<float>(scores_.begin(), scores_.end()),
             std::vector<float>(labels_.begin(), labels_.end()));
}

std::string JsonNumber(double v) {
  if (std::isnan(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.5f", v);
  return buf;
}

namespace {
std::string Num(double v) { return JsonNumber(v); }
}  // namespace

std::string EvalResult::ToJsonFields(const std::string& p) const {
  std::string s = "\"" + p + "examples\":" + std::to_string(examples) + ",\"" + p +
                  "positives\":" + std::to_string(positives) + ",\"" + p + "auc\":" + Num(auc) +
                  ",\"" + p + "logloss\":" + Num(logloss) + ",\"" + p + "gauc\":" + Num(gauc) +
                  ",\"" + p + "gauc_users\":" + std::to_string(gauc_users);
  if (oracle_auc >= 0) s += ",\"" + p + "oracle_auc\":" + Num(oracle_auc);
  return s;
}

EvalResult Evaluate(const std::vector<float>& probs, const std::vector<float>& labels,
                    const std::vector<uint64_t>& users, const std::vector<float>& oracle) {
  EvalResult r;
  r.examples = static_cast<int64_t>(probs.size());
  for (float l : labels) r.positives += l > 0.5f;
  r.auc = Auc(probs, labels);
  r.logloss = MeanLogLoss(probs, labels);
  r.gauc = Gauc(probs, labels, users, &r.gauc_users);
  bool have_oracle = !oracle.empty();
  for (float o : oracle) have_oracle = have_oracle && o >= 0;
  if (have_oracle) r.oracle_auc = Auc(oracle, labels);
  return r;
}

}  // namespace freshet
