#include "worker/data/synthetic_shop.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <system_error>
#include <utility>

#include "worker/data/example_io.h"

namespace freshet {
namespace {

// ---- The hidden ground truth. Changing any constant changes the dataset. ----
constexpr int kCategoryWords = 4;      // characteristic query words per category
constexpr int kFavourites = 3;         // favourite categories per user
constexpr int kRecentItems = 5;        // length of user_recent_items
constexpr int kCandidatesPerSlot = 3;  // candidates = 3 * slate_size
constexpr double kBias = -4.4;
constexpr double kQualitySd = 0.5;
constexpr double kInteraction = 1.2;  // weight of u.v / sqrt(d)
constexpr double kFavouriteBoost = 0.6;
constexpr double kSessionBoost = 0.5;     // item category among the recent clicks'
constexpr double kQueryMatch = 1.0;       // search, item in the intent category
constexpr double kQueryMismatch = -0.5;   // search, item elsewhere
constexpr double kAbsolutePrice = -0.15;  // per unit of log(price / $30)
constexpr double kDesktop = 0.1;
constexpr double kEvening = 0.15;        // hours 18..23
constexpr double kExamineMobile = 0.45;  // examine = 1 / (1 + beta * (pos - 1))
constexpr double kExamineDesktop = 0.25;
constexpr double kRankerTaste = 0.3;  // ranker = known + 0.3 * personal + noise
constexpr double kRankerNoiseSd = 1.0;
constexpr double kBuyBias = -1.5;  // purchase given click
constexpr double kBuyFavourite = 0.5;
constexpr double kBuyQuality = 0.5;
constexpr double kBuyPrice = 1.0;  // times the user's price sensitivity
constexpr double kBuyAbsolutePrice = -0.2;
constexpr double kMinProb = 1e-6;

const char* const kGenericWords[] = {"cheap", "best", "new",  "sale",
                                     "gift",  "top",  "deal", "online"};
constexpr int kNumGeneric = sizeof(kGenericWords) / sizeof(kGenericWords[0]);
constexpr int kCheapWord = 0;

// xoshiro256** seeded by splitmix64: the same stream on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      s = z ^ (z >> 31);
    }
  }
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform in [0, n). REQUIRES: n > 0.
  int64_t Below(int64_t n) { return static_cast<int64_t>(Uniform() * static_cast<double>(n)) % n; }
  bool Bernoulli(double p) { return Uniform() < p; }
  // Standard normal (Box-Muller).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// AUC of `score` against `label` (0/1), ties counted as half (average ranks).
// NaN when either class is missing.
double Auc(std::vector<std::pair<float, bool>> scored) {
  std::sort(scored.begin(), scored.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  double positives = 0, rank_sum = 0;
  size_t i = 0;
  while (i < scored.size()) {
    size_t j = i;
    double pos_here = 0;
    while (j < scored.size() && scored[j].first == scored[i].first) {
      pos_here += scored[j].second ? 1 : 0;
      ++j;
    }
    // Ranks i+1 .. j (1-based); their average for every member of the tie.
    rank_sum += pos_here * (static_cast<double>(i + 1 + j) / 2.0);
    positives += pos_here;
    i = j;
  }
  const double negatives = static_cast<double>(scored.size()) - positives;
  if (positives == 0 || negatives == 0) return std::nan("");
  return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives);
}

// A pronounceable made-up word of 2-3 syllables.
std::string MakeWord(Rng* rng) {
  static const char* const kOnsets[] = {"b", "d", "f", "g", "k", "l",  "m",  "n",  "p",
                                        "r", "s", "t", "v", "z", "br", "st", "tr", "ch"};
  static const char* const kVowels[] = {"a", "e", "i", "o", "u", "ai", "ou"};
  std::string w;
  const int syllables = 2 + static_cast<int>(rng->Below(2));
  for (int s = 0; s < syllables; ++s) {
    w += kOnsets[rng->Below(sizeof(kOnsets) / sizeof(kOnsets[0]))];
    w += kVowels[rng->Below(sizeof(kVowels) / sizeof(kVowels[0]))];
  }
  return w;
}

std::string FormatDouble(double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", x);
  return buf;
}

std::string JsonNumber(double x) { return std::isfinite(x) ? FormatDouble(x) : "null"; }

}  // namespace

struct SyntheticShop::World {
  struct User {
    std::vector<double> latent;
    int favourites[kFavourites];
    double price_sensitivity;
    bool mobile;              // main device
    int64_t latent_time;      // time the latent vector was last advanced to
    std::vector<int> recent;  // clicked items, most recent first
    std::string token;
  };
  struct Item {
    int category;
    std::vector<double> latent;
    double quality;
    int64_t price_cents;
    double log_price;  // log dollars
    std::string token, price, price_bucket;
  };
  struct Category {
    std::vector<double> center;
    double mean_log_price;
    std::vector<int> items;
    std::vector<std::string> words;
    std::string token;
  };

  Rng rng{0};
  std::vector<User> users;
  std::vector<Item> items;
  std::vector<Category> categories;
  std::vector<double> user_cumulative;  // activity weights, cumulative
  std::vector<int64_t> request_times;   // sorted
  std::vector<int> trending;
  std::vector<int64_t> chosen_in;  // per item: the last request it was a candidate of
  std::vector<std::string> position_tokens, hour_tokens;
};

// One request's hidden draw: who, the context, the candidates and their
// true probabilities. Shared by the batch and the interactive generators, so
// both consume the world's random stream identically.
struct SyntheticShop::Drawn {
  int64_t time = 0;  // unix seconds
  int uid = 0;
  bool mobile = false;
  bool search = false;
  bool cheap = false;
  int hour = 0;
  int intent = 0;
  int trending = 0;
  std::string query, recent_items, recent_categories;
  struct Candidate {
    int item;
    double logit;   // true click logit before position bias
    double ranker;  // the production ranker's noisy view of it
    double p_buy;   // P(buy | click)
  };
  std::vector<Candidate> candidates;  // in draw order
};

StatusOr<ShopLabel> ParseShopLabel(const std::string& name) {
  if (name == "click") return ShopLabel::kClick;
  if (name == "purchase") return ShopLabel::kPurchase;
  return InvalidArgument("unknown shop label '" + name + "' (expected click or purchase)");
}

const char* ShopLabelName(ShopLabel label) {
  return label == ShopLabel::kPurchase ? "purchase" : "click";
}

Status ValidateShopConfig(const ShopConfig& c) {
  auto bad = [](const std::string& field, const std::string& why) {
    return InvalidArgument("synthetic shop config: " + field + " " + why);
  };
  if (c.num_users <= 0) return bad("num_users", "must be positive");
  if (c.num_categories <= 0) return bad("num_categories", "must be positive");
  if (c.num_categories < kFavourites) {
    return bad("num_categories", "must be at least " + std::to_string(kFavourites));
  }
  if (c.num_items < c.num_categories) return bad("num_items", "must be >= num_categories");
  if (c.latent_dim <= 0) return bad("latent_dim", "must be positive");
  if (c.num_requests <= 0) return bad("num_requests", "must be positive");
  if (c.slate_size <= 0) return bad("slate_size", "must be positive");
  if (c.slate_size > c.num_items) return bad("slate_size", "must be <= num_items");
  if (!(c.search_fraction >= 0 && c.search_fraction <= 1)) {
    return bad("search_fraction", "must be in [0, 1]");
  }
  if (c.duration_s <= 0) return bad("duration_s", "must be positive");
  if (c.drift_period_s <= 0) return bad("drift_period_s", "must be positive");
  if (!(c.preference_tau_s >= 0)) return bad("preference_tau_s", "must be >= 0");
  if (!(c.holdout_fraction >= 0 && c.holdout_fraction < 1)) {
    return bad("holdout_fraction", "must be in [0, 1)");
  }
  if (c.start_time < 0) return bad("start_time", "must be >= 0");
  if (!std::isfinite(c.trending_boost)) return bad("trending_boost", "must be finite");
  if (!(c.trending_candidate_share >= 0 && c.trending_candidate_share < 1)) {
    return bad("trending_candidate_share", "must be in [0, 1)");
  }
  if (c.label != ShopLabel::kClick && c.label != ShopLabel::kPurchase) {
    return bad("label", "is not click or purchase");
  }
  return Status::OK();
}

const std::vector<std::string>& ShopColumns() {
  static const std::vector<std::string> kColumns = {
      "user",    "item",     "category", "price",  "price_bucket",      "query",
      "surface", "position", "hour",     "device", "user_recent_items", "user_recent_categories"};
  return kColumns;
}

const std::vector<std::string>& ShopExampleColumns() {
  static const std::vector<std::string> kColumns = [] {
    std::vector<std::string> c = ShopColumns();
    c.push_back("label:buy");
    return c;
  }();
  return kColumns;
}

SyntheticShop::SyntheticShop(const ShopConfig& config)
    : config_(config), world_(std::make_unique<World>()) {}

SyntheticShop::~SyntheticShop() = default;

StatusOr<std::unique_ptr<SyntheticShop>> SyntheticShop::Create(const ShopConfig& config) {
  FRESHET_RETURN_IF_ERROR(ValidateShopConfig(config));
  std::unique_ptr<SyntheticShop> shop(new SyntheticShop(config));
  World& w = *shop->world_;
  const int d = config.latent_dim;
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));

  // The vocabulary does not depend on the seed: category words are stable
  // names, whatever the world.
  {
    Rng vocab_rng(0x5eed0f5b0bULL);
    std::vector<std::string> used(kGenericWords, kGenericWords + kNumGeneric);
    w.categories.resize(config.num_categories);
    for (int c = 0; c < config.num_categories; ++c) {
      w.categories[c].token = "c" + std::to_string(c);
      while (static_cast<int>(w.categories[c].words.size()) < kCategoryWords) {
        std::string word = MakeWord(&vocab_rng);
        if (std::find(used.begin(), used.end(), word) != used.end()) continue;
        used.push_back(word);
        w.categories[c].words.push_back(std::move(word));
      }
    }
  }

  w.rng = Rng(config.seed);
  Rng& rng = w.rng;
  for (auto& cat : w.categories) {
    cat.center.resize(d);
    for (double& x : cat.center) x = 0.8 * rng.Normal();
    cat.mean_log_price = rng.Uniform(std::log(5.0), std::log(300.0));
  }
  // Category popularity (how many items it has): mildly skewed, every
  // category gets at least one item.
  std::vector<double> cat_weight(config.num_categories);
  double cat_total = 0;
  for (double& x : cat_weight) cat_total += (x = std::exp(0.5 * rng.Normal()));
  w.items.resize(config.num_items);
  for (int i = 0; i < config.num_items; ++i) {
    World::Item& item = w.items[i];
    if (i < config.num_categories) {
      item.category = i;
    } else {
      double r = rng.Uniform() * cat_total;
      int c = 0;
      while (c + 1 < config.num_categories && r >= cat_weight[c]) r -= cat_weight[c++];
      item.category = c;
    }
    const World::Category& cat = w.categories[item.category];
    item.latent.resize(d);
    for (int k = 0; k < d; ++k) item.latent[k] = cat.center[k] + 0.6 * rng.Normal();
    item.quality = kQualitySd * rng.Normal();
    const double dollars = std::exp(cat.mean_log_price + 0.5 * rng.Normal());
    item.price_cents = std::max<int64_t>(0, static_cast<int64_t>(dollars)) * 100 + 99;
    item.log_price = std::log(static_cast<double>(item.price_cents) / 100.0);
    item.token = "i" + std::to_string(i);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%" PRId64 ".%02d", item.price_cents / 100,
                  static_cast<int>(item.price_cents % 100));
    item.price = buf;
    item.price_bucket = std::to_string(
        static_cast<int>(std::floor(std::log2(static_cast<double>(item.price_cents)))));
    w.categories[item.category].items.push_back(i);
  }

  w.users.resize(config.num_users);
  w.user_cumulative.resize(config.num_users);
  double activity_total = 0;
  for (int u = 0; u < config.num_users; ++u) {
    World::User& user = w.users[u];
    user.latent.resize(d);
    for (double& x : user.latent) x = rng.Normal();
    // Favourites: drawn in proportion to exp(2 * u.center / sqrt(d)), so they
    // agree with the latent taste.
    std::vector<double> pref(config.num_categories);
    for (int c = 0; c < config.num_categories; ++c) {
      pref[c] = std::exp(2.0 * Dot(user.latent, w.categories[c].center) * inv_sqrt_d);
    }
    for (int f = 0; f < kFavourites; ++f) {
      double total = 0;
      for (double p : pref) total += p;
      double r = rng.Uniform() * total;
      int c = 0;
      while (c + 1 < config.num_categories && (r >= pref[c] || pref[c] == 0)) r -= pref[c++];
      user.favourites[f] = c;
      pref[c] = 0;
    }
    user.price_sensitivity = rng.Uniform(0.3, 1.5);
    user.mobile = rng.Bernoulli(0.65);
    user.latent_time = config.start_time;
    user.token = "u" + std::to_string(u);
    activity_total += std::exp(0.7 * rng.Normal());
    w.user_cumulative[u] = activity_total;
  }

  // Request times: a daily cycle peaking at 20:00 UTC, by rejection sampling.
  w.request_times.resize(config.num_requests);
  for (int64_t& t : w.request_times) {
    for (;;) {
      const double offset = rng.Uniform() * static_cast<double>(config.duration_s);
      const int64_t candidate = config.start_time + static_cast<int64_t>(offset);
      const double hour = static_cast<double>(candidate % 86400) / 3600.0;
      const double intensity = 0.6 + 0.4 * std::cos(6.283185307179586 * (hour - 20.0) / 24.0);
      if (rng.Uniform() < intensity) {
        t = candidate;
        break;
      }
    }
  }
  std::sort(w.request_times.begin(), w.request_times.end());

  const int64_t periods = (config.duration_s + config.drift_period_s - 1) / config.drift_period_s;
  for (int64_t p = 0; p < periods; ++p) {
    int c = static_cast<int>(rng.Below(config.num_categories));
    if (!w.trending.empty() && config.num_categories > 1) {
      while (c == w.trending.back()) c = static_cast<int>(rng.Below(config.num_categories));
    }
    w.trending.push_back(c);
  }
  w.chosen_in.assign(config.num_items, -1);
  for (int p = 1; p <= config.slate_size; ++p) w.position_tokens.push_back(std::to_string(p));
  for (int h = 0; h < 24; ++h) w.hour_tokens.push_back(std::to_string(h));
  return shop;
}

int64_t SyntheticShop::total_impressions() const {
  return config_.num_requests * config_.slate_size;
}

int64_t SyntheticShop::split_request() const {
  // The epsilon keeps e.g. 30000 * (1 - 0.2) from flooring to 23999.
  const double train = std::floor(
      static_cast<double>(config_.num_requests) * (1.0 - config_.holdout_fraction) + 1e-6);
  return std::clamp<int64_t>(static_cast<int64_t>(train), 0, config_.num_requests);
}

const std::vector<int>& SyntheticShop::trending_categories() const { return world_->trending; }

const std::vector<std::string>& SyntheticShop::category_words(int c) const {
  CHECK(c >= 0 && c < config_.num_categories) << "category " << c;
  return world_->categories[c].words;
}

int SyntheticShop::TrendingAt(int64_t time_s) const {
  const World& w = *world_;
  const int64_t period = std::max<int64_t>(0, time_s - config_.start_time) / config_.drift_period_s;
  return w.trending[std::min<int64_t>(period, static_cast<int64_t>(w.trending.size()) - 1)];
}

void SyntheticShop::DrawRequest(int64_t time, Drawn* out) {
  World& w = *world_;
  Rng& rng = w.rng;
  const ShopConfig& cfg = config_;
  const int d = cfg.latent_dim;
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));
  const int64_t marker = ++draws_;  // w.chosen_in[item] == marker: a candidate already
  out->time = time;

  // Who.
  const double r = rng.Uniform() * w.user_cumulative.back();
  const int uid = static_cast<int>(
      std::min<size_t>(std::upper_bound(w.user_cumulative.begin(), w.user_cumulative.end(), r) -
                           w.user_cumulative.begin(),
                       w.users.size() - 1));
  out->uid = uid;
  World::User& user = w.users[uid];
  // Advance the user's latent taste (Ornstein-Uhlenbeck, stationary N(0, 1)).
  if (cfg.preference_tau_s > 0 && time > user.latent_time) {
    const double a = std::exp(-static_cast<double>(time - user.latent_time) / cfg.preference_tau_s);
    const double s = std::sqrt(1.0 - a * a);
    for (double& x : user.latent) x = a * x + s * rng.Normal();
  }
  user.latent_time = std::max(user.latent_time, time);

  // Context.
  const bool mobile = rng.Bernoulli(0.85) ? user.mobile : !user.mobile;
  const int hour = static_cast<int>((time % 86400) / 3600);
  const bool search = rng.Bernoulli(cfg.search_fraction);
  const int favourite = user.favourites[rng.Below(kFavourites)];
  const int intent =
      rng.Bernoulli(0.6) ? favourite : static_cast<int>(rng.Below(cfg.num_categories));
  const int trending = TrendingAt(time);
  out->mobile = mobile;
  out->hour = hour;
  out->search = search;
  out->intent = intent;
  out->trending = trending;
  std::string& query = out->query;
  query.clear();
  bool cheap = false;
  if (search) {
    std::vector<std::string> tokens;
    if (rng.Bernoulli(0.4)) {
      const int g = static_cast<int>(rng.Below(kNumGeneric));
      cheap = g == kCheapWord;
      tokens.push_back(kGenericWords[g]);
    }
    const auto& words = w.categories[intent].words;
    const int first = static_cast<int>(rng.Below(kCategoryWords));
    tokens.push_back(words[first]);
    if (rng.Bernoulli(0.5)) {
      tokens.push_back(words[(first + 1 + rng.Below(kCategoryWords - 1)) % kCategoryWords]);
    }
    if (rng.Bernoulli(0.1)) {  // an ambiguous query: a word of another category
      const auto& other = w.categories[rng.Below(cfg.num_categories)].words;
      tokens.push_back(other[rng.Below(kCategoryWords)]);
    }
    for (const std::string& t : tokens) {
      if (!query.empty()) query += ' ';
      query += t;
    }
  }
  out->cheap = cheap;
  // Session interest: categories of the recent clicks.
  std::vector<int> session_categories;
  for (int item : user.recent) session_categories.push_back(w.items[item].category);
  std::string& recent_items = out->recent_items;
  std::string& recent_categories = out->recent_categories;
  recent_items.clear();
  recent_categories.clear();
  for (int item : user.recent) {
    if (!recent_items.empty()) recent_items += ' ';
    recent_items += w.items[item].token;
  }
  for (int c : session_categories) {
    const std::string& token = w.categories[c].token;
    if (recent_categories.find(token) != std::string::npos &&
        (" " + recent_categories + " ").find(" " + token + " ") != std::string::npos) {
      continue;  // distinct categories
    }
    if (!recent_categories.empty()) recent_categories += ' ';
    recent_categories += token;
  }

  // Candidates: mostly from the intent category (search) or a favourite
  // (browse), the rest anywhere (and, when configured, a share from the
  // trending category); distinct.
  const int num_candidates = std::min(cfg.num_items, kCandidatesPerSlot * cfg.slate_size);
  const int pool_category = search ? intent : favourite;
  const double pool_share = search ? 0.7 : 0.5;
  std::vector<int> candidates;
  candidates.reserve(num_candidates);
  auto taken = [&](int item) { return w.chosen_in[item] == marker; };
  while (static_cast<int>(candidates.size()) < num_candidates) {
    int item = -1;
    for (int attempt = 0; attempt < 20 && item < 0; ++attempt) {
      int pick;
      // No draw at all when the share is 0: the batch dataset is unchanged.
      if (cfg.trending_candidate_share > 0 && rng.Bernoulli(cfg.trending_candidate_share)) {
        const auto& pool = w.categories[trending].items;
        pick = pool[rng.Below(static_cast<int64_t>(pool.size()))];
      } else if (rng.Bernoulli(pool_share)) {
        const auto& pool = w.categories[pool_category].items;
        pick = pool[rng.Below(static_cast<int64_t>(pool.size()))];
      } else {
        pick = static_cast<int>(rng.Below(cfg.num_items));
      }
      if (!taken(pick)) item = pick;
    }
    for (int i = 0; item < 0; ++i) {  // tiny worlds: the first free item
      if (!taken(i)) item = i;
    }
    w.chosen_in[item] = marker;
    candidates.push_back(item);
  }

  // True logits, the production ranker's noisy view of them, P(buy | click).
  const double price_factor = cheap ? 2.0 : 1.0;
  out->candidates.clear();
  out->candidates.reserve(candidates.size());
  for (int item_id : candidates) {
    const World::Item& item = w.items[item_id];
    const World::Category& cat = w.categories[item.category];
    const bool fav = std::find(std::begin(user.favourites), std::end(user.favourites),
                               item.category) != std::end(user.favourites);
    const bool session = std::find(session_categories.begin(), session_categories.end(),
                                   item.category) != session_categories.end();
    // What an older production model knows: relevance, quality, price
    // level. The user's personal taste (latent, session, price sensitivity)
    // it sees only faintly, so shown slates keep the personal signal for a
    // new model to learn; the current trend it does not see at all (it was
    // trained before).
    double known = kBias + item.quality + kAbsolutePrice * (item.log_price - std::log(30.0));
    if (fav) known += kFavouriteBoost;
    if (search) known += item.category == intent ? kQueryMatch : kQueryMismatch;
    if (!mobile) known += kDesktop;
    if (hour >= 18) known += kEvening;
    double personal = kInteraction * Dot(user.latent, item.latent) * inv_sqrt_d -
                      price_factor * user.price_sensitivity * (item.log_price - cat.mean_log_price);
    if (session) personal += kSessionBoost;
    const double trend = item.category == trending ? cfg.trending_boost : 0.0;
    const double buy_logit =
        kBuyBias + (fav ? kBuyFavourite : 0.0) + kBuyQuality * item.quality -
        kBuyPrice * price_factor * user.price_sensitivity * (item.log_price - cat.mean_log_price) +
        kBuyAbsolutePrice * (item.log_price - std::log(30.0));
    out->candidates.push_back({item_id, known + personal + trend,
                               known + kRankerTaste * personal + kRankerNoiseSd * rng.Normal(),
                               std::clamp(Sigmoid(buy_logit), kMinProb, 1.0 - kMinProb)});
  }
}

double SyntheticShop::Examine(bool mobile, int position) {
  return 1.0 / (1.0 + (mobile ? kExamineMobile : kExamineDesktop) * (position - 1));
}

bool SyntheticShop::NextRequest(std::vector<Example>* out, std::vector<ShopReaction>* reactions) {
  out->clear();
  if (reactions != nullptr) reactions->clear();
  if (next_request_ >= config_.num_requests) return false;
  World& w = *world_;
  Rng& rng = w.rng;
  const ShopConfig& cfg = config_;
  const int64_t time = w.request_times[next_request_++];
  if (drawn_buf_ == nullptr) drawn_buf_ = std::make_unique<Drawn>();
  Drawn& d = *drawn_buf_;
  DrawRequest(time, &d);
  World::User& user = w.users[d.uid];
  std::sort(d.candidates.begin(), d.candidates.end(),
            [](const Drawn::Candidate& a, const Drawn::Candidate& b) {
              return a.ranker != b.ranker ? a.ranker > b.ranker : a.item < b.item;
            });

  // Impressions, labels, oracle.
  std::vector<int> clicked;
  out->resize(cfg.slate_size);
  if (reactions != nullptr) reactions->resize(cfg.slate_size);
  for (int pos = 1; pos <= cfg.slate_size; ++pos) {
    const Drawn::Candidate& s = d.candidates[pos - 1];
    const World::Item& item = w.items[s.item];
    const World::Category& cat = w.categories[item.category];
    const double p_click =
        std::clamp(Sigmoid(s.logit) * Examine(d.mobile, pos), kMinProb, 1.0 - kMinProb);
    const bool click = rng.Bernoulli(p_click);
    const double p_buy = s.p_buy;
    // Drawn for every impression whatever the label, so both labels see the
    // same world, requests and clicks.
    const bool buy = rng.Bernoulli(p_buy);
    double p_label = p_click;
    bool label = click;
    if (cfg.label == ShopLabel::kPurchase) {
      p_label = std::clamp(p_click * p_buy, kMinProb, 1.0 - kMinProb);
      label = click && buy;
    }
    if (click) clicked.push_back(s.item);
    if (reactions != nullptr)
      (*reactions)[pos - 1] = ShopReaction{click, click && buy, p_click, p_buy};

    Example& ex = (*out)[pos - 1];
    ex.label = label ? 1.0f : 0.0f;
    ex.time = time;
    ex.user = user.token;
    ex.oracle = static_cast<float>(p_label);
    ex.values = {user.token,
                 item.token,
                 cat.token,
                 item.price,
                 item.price_bucket,
                 d.query,
                 d.search ? "search" : "browse",
                 w.position_tokens[pos - 1],
                 w.hour_tokens[d.hour],
                 d.mobile ? "mobile" : "desktop",
                 d.recent_items,
                 d.recent_categories};
  }
  // The user's history grows after the request: impressions only ever see
  // clicks from earlier requests. Within a slate, a click at a larger
  // position number counts as more recent.
  for (int item : clicked) {
    user.recent.insert(user.recent.begin(), item);
  }
  if (user.recent.size() > static_cast<size_t>(kRecentItems)) user.recent.resize(kRecentItems);
  return true;
}

// ---- Interactive ----------------------------------------------------------------

void SyntheticShop::NextInteractive(int64_t time_ms, ShopRequest* out) {
  CHECK_GE(time_ms, 0);
  World& w = *world_;
  if (drawn_buf_ == nullptr) drawn_buf_ = std::make_unique<Drawn>();
  Drawn& d = *drawn_buf_;
  DrawRequest(time_ms / 1000, &d);
  const World::User& user = w.users[d.uid];
  out->id = interactive_requests_++;
  out->time_ms = time_ms;
  out->user = d.uid;
  out->user_token = user.token;
  out->search = d.search;
  out->mobile = d.mobile;
  out->hour = d.hour;
  out->trending = d.trending;
  out->items.resize(d.candidates.size());
  out->p_click1.resize(d.candidates.size());
  out->p_buy.resize(d.candidates.size());
  out->candidates.resize(d.candidates.size());
  for (size_t i = 0; i < d.candidates.size(); ++i) {
    const Drawn::Candidate& c = d.candidates[i];
    const World::Item& item = w.items[c.item];
    out->items[i] = c.item;
    out->p_click1[i] = std::clamp(Sigmoid(c.logit), kMinProb, 1.0 - kMinProb);
    out->p_buy[i] = c.p_buy;
    Example& ex = out->candidates[i];
    ex.label = 0;
    ex.time = time_ms / 1000;
    ex.user = user.token;
    ex.oracle = static_cast<float>(out->p_click1[i]);
    ex.values = {user.token,
                 item.token,
                 w.categories[item.category].token,
                 item.price,
                 item.price_bucket,
                 d.query,
                 d.search ? "search" : "browse",
                 std::string(),
                 w.hour_tokens[d.hour],
                 d.mobile ? "mobile" : "desktop",
                 d.recent_items,
                 d.recent_categories};
  }
}

int SyntheticShop::ItemCategory(int item) const {
  CHECK(item >= 0 && item < config_.num_items) << "item " << item;
  return world_->items[item].category;
}

double SyntheticShop::ShownClickProbability(const ShopRequest& request, size_t candidate,
                                            int position) {
  return std::clamp(request.p_click1[candidate] * Examine(request.mobile, position), kMinProb,
                    1.0 - kMinProb);
}

double SyntheticShop::ExpectedClicks(const ShopRequest& request, const std::vector<int>& shown) {
  double sum = 0;
  for (size_t p = 0; p < shown.size(); ++p) {
    sum += ShownClickProbability(request, static_cast<size_t>(shown[p]), static_cast<int>(p) + 1);
  }
  return sum;
}

double SyntheticShop::OracleExpectedClicks(const ShopRequest& request, int k) {
  // The best slate puts the highest P(click) first (examine falls with the
  // position, so sorting maximises the sum).
  std::vector<double> p = request.p_click1;
  std::sort(p.begin(), p.end(), std::greater<double>());
  double sum = 0;
  for (int pos = 1; pos <= k && pos <= static_cast<int>(p.size()); ++pos) {
    sum += std::clamp(p[pos - 1] * Examine(request.mobile, pos), kMinProb, 1.0 - kMinProb);
  }
  return sum;
}

Status SyntheticShop::React(const ShopRequest& request, const std::vector<int>& shown,
                            std::vector<ShopReaction>* reactions) {
  reactions->clear();
  const size_t n = request.items.size();
  std::vector<bool> seen(n, false);
  for (size_t p = 0; p < shown.size(); ++p) {
    const int c = shown[p];
    if (c < 0 || static_cast<size_t>(c) >= n) {
      return InvalidArgument("shop react: shown[" + std::to_string(p) + "] = " + std::to_string(c) +
                             " is not a candidate index (request has " + std::to_string(n) + ")");
    }
    if (seen[c]) {
      return InvalidArgument("shop react: candidate " + std::to_string(c) + " shown twice");
    }
    seen[c] = true;
  }
  if (request.user < 0 || request.user >= config_.num_users) {
    return InvalidArgument("shop react: request has no valid user");
  }
  // The reaction coins depend only on (seed, request id, position): the same
  // slate of the same request gets the same reactions in every run.
  Rng rng(config_.seed * 0x9e3779b97f4a7c15ULL ^
          (static_cast<uint64_t>(request.id) + 0x243f6a8885a308d3ULL));
  World::User& user = world_->users[request.user];
  std::vector<int> clicked;
  reactions->resize(shown.size());
  for (size_t p = 0; p < shown.size(); ++p) {
    const size_t c = static_cast<size_t>(shown[p]);
    ShopReaction& r = (*reactions)[p];
    r.p_click = ShownClickProbability(request, c, static_cast<int>(p) + 1);
    r.p_buy = request.p_buy[c];
    r.click = rng.Bernoulli(r.p_click);
    r.buy = rng.Bernoulli(r.p_buy) && r.click;
    if (r.click) clicked.push_back(request.items[c]);
  }
  for (int item : clicked) user.recent.insert(user.recent.begin(), item);
  if (user.recent.size() > static_cast<size_t>(kRecentItems)) user.recent.resize(kRecentItems);
  return Status::OK();
}

StatusOr<ShopSummary> WriteSyntheticShop(const ShopConfig& config, const std::string& out_dir) {
  const auto start = std::chrono::steady_clock::now();
  FRESHET_ASSIGN_OR_RETURN(std::unique_ptr<SyntheticShop> shop, SyntheticShop::Create(config));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Internal("cannot create directory " + out_dir + ": " + ec.message());

  ShopSummary summary;
  summary.columns = ShopExampleColumns();
  summary.train_file = out_dir + "/train.examples";
  summary.holdout_file = out_dir + "/holdout.examples";
  summary.info_file = out_dir + "/shop_info.txt";
  FRESHET_ASSIGN_OR_RETURN(auto train, ExampleWriter::Open(summary.train_file, summary.columns));
  FRESHET_ASSIGN_OR_RETURN(auto holdout,
                           ExampleWriter::Open(summary.holdout_file, summary.columns));

  std::vector<std::pair<float, bool>> train_scored, holdout_scored;
  train_scored.reserve(shop->split_request() * config.slate_size);
  holdout_scored.reserve((config.num_requests - shop->split_request()) * config.slate_size);
  std::vector<std::pair<float, bool>> holdout_buy_scored, holdout_cvr_scored;
  holdout_buy_scored.reserve(holdout_scored.capacity());
  double train_oracle_sum = 0, holdout_oracle_sum = 0;
  std::vector<Example> slate;
  std::vector<ShopReaction> reactions;
  summary.split_time = -1;
  while (true) {
    const bool is_holdout = shop->requests_done() >= shop->split_request();
    if (!shop->NextRequest(&slate, &reactions)) break;
    ++summary.requests;
    if (is_holdout && summary.split_time < 0) summary.split_time = slate[0].time;
    for (size_t k = 0; k < slate.size(); ++k) {
      Example& ex = slate[k];
      const ShopReaction& r = reactions[k];
      ex.values.push_back(r.buy ? "1" : "0");  // label:buy
      (is_holdout ? summary.holdout_buys : summary.train_buys) += r.buy;
      if (is_holdout) {
        holdout_buy_scored.emplace_back(
            static_cast<float>(std::clamp(r.p_click * r.p_buy, kMinProb, 1.0 - kMinProb)), r.buy);
        if (r.click) holdout_cvr_scored.emplace_back(static_cast<float>(r.p_buy), r.buy);
      }
      const bool positive = ex.label > 0.5f;
      if (is_holdout) {
        FRESHET_RETURN_IF_ERROR(holdout->Write(ex));
        ++summary.holdout_examples;
        summary.holdout_positives += positive;
        holdout_oracle_sum += ex.oracle;
        holdout_scored.emplace_back(ex.oracle, positive);
      } else {
        FRESHET_RETURN_IF_ERROR(train->Write(ex));
        ++summary.train_examples;
        summary.train_positives += positive;
        train_oracle_sum += ex.oracle;
        train_scored.emplace_back(ex.oracle, positive);
      }
    }
  }
  if (summary.split_time < 0) summary.split_time = config.start_time + config.duration_s;
  FRESHET_RETURN_IF_ERROR(train->Close());
  FRESHET_RETURN_IF_ERROR(holdout->Close());

  auto mean = [](double sum, int64_t n) { return n > 0 ? sum / static_cast<double>(n) : 0.0; };
  summary.train_mean_oracle = mean(train_oracle_sum, summary.train_examples);
  summary.holdout_mean_oracle = mean(holdout_oracle_sum, summary.holdout_examples);
  summary.oracle_auc_train = Auc(std::move(train_scored));
  summary.oracle_auc_holdout = Auc(std::move(holdout_scored));
  summary.oracle_auc_buy_holdout = Auc(std::move(holdout_buy_scored));
  summary.oracle_auc_cvr_holdout = Auc(std::move(holdout_cvr_scored));
  summary.trending_categories = shop->trending_categories();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::ostringstream info;
  info << "# freshet synthetic shop\n"
       << "seed: " << config.seed << "\n"
       << "num_users: " << config.num_users << "\n"
       << "num_items: " << config.num_items << "\n"
       << "num_categories: " << config.num_categories << "\n"
       << "latent_dim: " << config.latent_dim << "\n"
       << "num_requests: " << config.num_requests << "\n"
       << "slate_size: " << config.slate_size << "\n"
       << "search_fraction: " << FormatDouble(config.search_fraction) << "\n"
       << "start_time: " << config.start_time << "\n"
       << "duration_s: " << config.duration_s << "\n"
       << "drift_period_s: " << config.drift_period_s << "\n"
       << "preference_tau_s: " << FormatDouble(config.preference_tau_s) << "\n"
       << "holdout_fraction: " << FormatDouble(config.holdout_fraction) << "\n"
       << "label: " << ShopLabelName(config.label) << "\n"
       << "columns:";
  for (const std::string& c : summary.columns) info << ' ' << c;
  info << "\n"
       << "split_time: " << summary.split_time << "\n"
       << "train_examples: " << summary.train_examples << "\n"
       << "train_positives: " << summary.train_positives << "\n"
       << "train_positive_rate: "
       << FormatDouble(mean(static_cast<double>(summary.train_positives), summary.train_examples))
       << "\n"
       << "train_mean_oracle: " << FormatDouble(summary.train_mean_oracle) << "\n"
       << "holdout_examples: " << summary.holdout_examples << "\n"
       << "holdout_positives: " << summary.holdout_positives << "\n"
       << "holdout_positive_rate: "
       << FormatDouble(
              mean(static_cast<double>(summary.holdout_positives), summary.holdout_examples))
       << "\n"
       << "holdout_mean_oracle: " << FormatDouble(summary.holdout_mean_oracle) << "\n"
       << "oracle_auc_train: " << FormatDouble(summary.oracle_auc_train) << "\n"
       << "oracle_auc_holdout: " << FormatDouble(summary.oracle_auc_holdout) << "\n"
       << "train_buys (label:buy): " << summary.train_buys << "\n"
       << "holdout_buys (label:buy): " << summary.holdout_buys << "\n"
       << "oracle_auc_buy_holdout (label:buy): " << FormatDouble(summary.oracle_auc_buy_holdout)
       << "\n"
       << "oracle_auc_cvr_holdout (label:buy among clicks): "
       << FormatDouble(summary.oracle_auc_cvr_holdout) << "\n"
       << "trending_categories (one per drift period):";
  for (int c : summary.trending_categories) info << " c" << c;
  info << "\n";
  // Atomic like the example files: write a temporary, then rename.
  const std::string tmp = summary.info_file + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << info.str();
    f.close();
    if (!f) return Internal("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, summary.info_file, ec);
  if (ec)
    return Internal("cannot rename " + tmp + " to " + summary.info_file + ": " + ec.message());
  return summary;
}

std::string ShopSummaryJson(const ShopSummary& s) {
  std::ostringstream j;
  j << "{\"requests\": " << s.requests << ", \"train_examples\": " << s.train_examples
    << ", \"train_positives\": " << s.train_positives
    << ", \"holdout_examples\": " << s.holdout_examples
    << ", \"holdout_positives\": " << s.holdout_positives
    << ", \"train_mean_oracle\": " << JsonNumber(s.train_mean_oracle)
    << ", \"holdout_mean_oracle\": " << JsonNumber(s.holdout_mean_oracle)
    << ", \"oracle_auc_train\": " << JsonNumber(s.oracle_auc_train)
    << ", \"oracle_auc_holdout\": " << JsonNumber(s.oracle_auc_holdout)
    << ", \"train_buys\": " << s.train_buys << ", \"holdout_buys\": " << s.holdout_buys
    << ", \"oracle_auc_buy_holdout\": " << JsonNumber(s.oracle_auc_buy_holdout)
    << ", \"oracle_auc_cvr_holdout\": " << JsonNumber(s.oracle_auc_cvr_holdout)
    << ", \"split_time\": " << s.split_time << ", \"seconds\": " << JsonNumber(s.seconds) << "}";
  return j.str();
}

}  // namespace freshet
