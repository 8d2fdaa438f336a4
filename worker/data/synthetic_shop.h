// The synthetic shop: freshet's embedded default dataset, needing no download.
//
// A small simulated online shop with a hidden ground-truth model. Users and
// items have latent preference vectors; items have a category and a price;
// users have a few favourite categories, a price sensitivity and a main
// device. Requests arrive over `duration_s` of event time with a daily cycle;
// each is a search (with a query whose tokens come from the vocabulary of an
// intent category, plus generic words) or a browse (no query). Candidates
// (3 * slate_size distinct items) come mostly from the intent category
// (search) or one of the user's favourites (browse). A noisy "production
// ranker" (an older model: it knows relevance, quality and price level, sees
// the user's personal taste only faintly and the current trend not at all)
// orders them, and the top
// `slate_size` are shown at positions 1..slate_size. Each impression is
// clicked with
//
//   P(click) = sigmoid(logit) * examine(position, device)
//   logit    = bias + item quality + interaction * u.v / sqrt(latent_dim)
//            + favourite-category boost + session boost (the item's category
//              is among those of the user's last clicks)
//            + query match (search and the item is in the intent category;
//              a mismatch is penalised) + trending boost (the item's category
//              is this period's trending one)
//            - price sensitivity * (log price - mean log price of the category)
//              (doubled when the query says "cheap")
//            + small device and evening effects
//   examine  = 1 / (1 + beta(device) * (position - 1))   (mobile steeper)
//
// and a click becomes a purchase with a probability that falls with the
// relative price and rises with favourite categories and item quality.
// Labels are drawn from exactly these probabilities, and the probability of
// the written label (click, or click and purchase) is written as each
// example's oracle, so the oracle AUC (the best any model can reach: what is
// left is coin-flip noise) is known. Every impression draws its purchase
// coin whatever the label, so both labels give the same impressions and
// clicks for the same config.
//
// Drift: the trending category changes every `drift_period_s`, and every
// user's latent vector follows an Ornstein-Uhlenbeck process with time
// constant `preference_tau_s` (stationary, so preferences wander but keep
// their scale).
//
// Example files (format in model/example.h), columns (ShopColumns()):
//   user               "u<id>"
//   item               "i<id>"
//   category           "c<id>"
//   price              dollars, two decimals ("12.99")
//   price_bucket       floor(log2(price in cents)), as an integer
//   query              space-separated query tokens; empty for browse
//   surface            "search" or "browse"
//   position           1..slate_size
//   hour               0..23, hour of day of the request (UTC)
//   device             "mobile" or "desktop"
//   user_recent_items  the user's last 5 clicked items from earlier requests,
//                      most recent first, space-separated (possibly none)
//   user_recent_categories  the distinct categories of those items (what the
//                      session boost depends on), space-separated
// Example::user is the user token; Example::time the request's unix time
// (all impressions of a request share it); Example::oracle the true
// P(label = 1).
// The example files (WriteSyntheticShop, ShopExampleColumns()) add the label
// column (model/example.h)
//   label:buy          1 iff the impression was clicked and bought, else 0
// for the conversion head of a multi-task model (ESMM: p(click and buy) =
// p(click) * p(buy | click); cluster-configs/jobs/synthetic-esmm.pbtxt). Its
// oracle is P(click) * P(buy | click); shop_info.txt has its oracle AUC.
//
// Output of WriteSyntheticShop: out_dir/train.examples (the first
// (1 - holdout_fraction) of the requests, by time), out_dir/holdout.examples
// (the rest; every holdout time >= every train time) and out_dir/shop_info.txt
// (config, counts, positive rates, oracle AUCs, trending categories).
//
// Determinism: the same ShopConfig gives the same examples and byte-identical
// files (freshet's own random generator, no std:: distributions; across
// platforms only libm's exp/log/cos could differ in the last bit).
//
// Thread safety: SyntheticShop is used by one thread at a time; the free
// functions share no state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/example.h"

namespace freshet {

enum class ShopLabel {
  kClick = 0,     // label = clicked; oracle = P(click)
  kPurchase = 1,  // label = clicked and bought; oracle = P(click) * P(buy | click)
};

// Parses "click" or "purchase". InvalidArgument otherwise.
StatusOr<ShopLabel> ParseShopLabel(const std::string& name);
const char* ShopLabelName(ShopLabel label);

// The defaults give 1M impressions (10k per user and ~6.7k per item on
// average: enough that user and item embeddings, and so the hidden personal
// taste, can be learned) and an oracle AUC near 0.885; DeepFM reaches ~0.86
// in 3 epochs (about 0.95 of the oracle's lift over chance, (AUC - 0.5) /
// (oracle AUC - 0.5); cluster-configs/jobs/synthetic.pbtxt).
// Smaller worlds with fewer impressions per user leave taste unlearnable.
// The trending category changes every 4 days, so the holdout's trend began
// during training and online learning can pick it up.
struct ShopConfig {
  uint64_t seed = 1;
  int num_users = 100;
  int num_items = 150;
  int num_categories = 20;
  int latent_dim = 4;
  int64_t num_requests = 100000;           // searches and browses
  int slate_size = 10;                     // impressions per request
  double search_fraction = 0.5;            // the rest are browses
  int64_t start_time = 1700000000;         // unix seconds (2023-11-14 22:13:20 UTC)
  int64_t duration_s = 7 * 86400;          // requests fall in [start, start + duration)
  int64_t drift_period_s = 4 * 86400;      // the trending category changes this often
  double preference_tau_s = 60 * 86400.0;  // user latent drift time constant; 0: none
  double holdout_fraction = 0.2;           // of the requests, the latest ones
  ShopLabel label = ShopLabel::kClick;
  // Logit boost of the trending category's items (the default is the batch
  // dataset's; the closed-loop simulator makes the trend stronger).
  double trending_boost = 0.8;
  // Share of the candidates drawn from the trending category, in [0, 1)
  // (0: none, the batch dataset's; > 0 puts the trend into every request's
  // candidates, so a ranker that has learned it gains).
  double trending_candidate_share = 0;
};

// One interactive request (SyntheticShop::NextInteractive): the context and
// candidates a front end would send to a ranker, and the hidden truth the
// simulator needs to draw reactions.
struct ShopRequest {
  int64_t id = 0;       // 0, 1, 2, ... per shop: the reaction seed
  int64_t time_ms = 0;  // event time, unix ms (as given by the caller)
  int user = 0;         // user id; user_token is "u<id>"
  std::string user_token;
  bool search = false;  // else a browse
  bool mobile = false;  // the request's device
  int hour = 0;         // 0..23, UTC
  int trending = 0;     // the trending category at time_ms (hidden truth)
  // One Example per candidate (3 * slate_size distinct items, fewer in
  // worlds with fewer items), values in ShopColumns() order with an EMPTY
  // position (the caller decides where each goes); time = time_ms / 1000,
  // user = user_token, oracle = P(click | shown at position 1), label 0.
  std::vector<Example> candidates;
  std::vector<int> items;        // the candidates' item ids
  std::vector<double> p_click1;  // P(click | shown at position 1), per candidate
  std::vector<double> p_buy;     // P(buy | click), per candidate
};

// A simulated user's reaction to one shown item.
struct ShopReaction {
  bool click = false;
  bool buy = false;    // implies click
  double p_click = 0;  // the true P(click) at the position it was shown
  double p_buy = 0;    // P(buy | click)
};

// InvalidArgument naming the first bad field (counts must be positive,
// slate_size <= num_items, fractions in range, ...).
Status ValidateShopConfig(const ShopConfig& config);

// The feature columns, in order (see the header comment): the values of
// NextRequest's examples and of the interactive candidates.
const std::vector<std::string>& ShopColumns();
// The example files' columns: ShopColumns() and then "label:buy".
const std::vector<std::string>& ShopExampleColumns();

// Generates the shop's requests one at a time, in time order.
class SyntheticShop {
 public:
  // Builds the hidden world (users, items, vocabulary, trending schedule).
  // InvalidArgument for a bad config.
  static StatusOr<std::unique_ptr<SyntheticShop>> Create(const ShopConfig& config);
  ~SyntheticShop();

  const ShopConfig& config() const { return config_; }
  // num_requests * slate_size.
  int64_t total_impressions() const;
  // Requests [0, split_request()) are training data, the rest holdout.
  int64_t split_request() const;
  // Requests generated so far.
  int64_t requests_done() const { return next_request_; }

  // Replaces *out with the next request's slate_size impressions (positions
  // 1..slate_size, all at the same time, columns as ShopColumns()). With
  // `reactions`, also each impression's click and purchase draws and their
  // probabilities (whatever config().label is). Returns false, leaving *out
  // (and *reactions) empty, after the last request.
  bool NextRequest(std::vector<Example>* out, std::vector<ShopReaction>* reactions = nullptr);

  // ---- Interactive use (the closed-loop simulator, tools/shop_sim.cc) ----
  // A shop serves either NextRequest() (batch) or the calls below, not both.
  //
  // Draws the next request at event time time_ms (unix ms, >= 0; callers
  // keep it non-decreasing): its user (by activity), context and candidates,
  // from the same world and rules as the batch generator. The user's taste
  // drifts with event time, the trending category follows the drift
  // schedule (the last period's category stays after start + duration_s).
  // The user's recent items are those clicked in earlier React() calls.
  void NextInteractive(int64_t time_ms, ShopRequest* out);
  // The user's reactions to seeing the candidates shown[0], shown[1], ...
  // (indices into request.candidates) at positions 1, 2, ...: a click with
  // P(click | position 1) * examine(position, device), a purchase with
  // P(buy | click) after a click. The coins depend only on the config's seed,
  // request.id and the position, so the same slate of the same request draws
  // the same reactions. Clicked items join the user's recent items.
  // InvalidArgument (nothing changed) for an index out of range or repeated.
  Status React(const ShopRequest& request, const std::vector<int>& shown,
               std::vector<ShopReaction>* reactions);
  // Expected clicks of showing `shown` (indices, positions 1, 2, ...), and
  // of the best slate of k (candidates by true P(click), descending): the
  // oracle reference. REQUIRES: indices in range.
  static double ExpectedClicks(const ShopRequest& request, const std::vector<int>& shown);
  static double OracleExpectedClicks(const ShopRequest& request, int k);
  // P(click) of candidate c of `request` shown at `position` (1-based).
  static double ShownClickProbability(const ShopRequest& request, size_t c, int position);
  // Position bias: the chance a user examines position p (1 at position 1).
  static double Examine(bool mobile, int position);
  // The trending category at event time time_s (unix seconds).
  int TrendingAt(int64_t time_s) const;
  // The category of item `item` (0 <= item < num_items).
  int ItemCategory(int item) const;

  // Hidden truth, for reports and tests: the trending category id of each
  // drift period (period p covers [start + p*drift_period_s, ...)).
  const std::vector<int>& trending_categories() const;
  // The characteristic query words of category c (0 <= c < num_categories).
  const std::vector<std::string>& category_words(int c) const;

 private:
  struct World;
  struct Drawn;
  explicit SyntheticShop(const ShopConfig& config);
  // Draws one request at event time `time` (unix s) into *out, advancing
  // the world's random stream.
  void DrawRequest(int64_t time, Drawn* out);
  ShopConfig config_;
  std::unique_ptr<World> world_;
  std::unique_ptr<Drawn> drawn_buf_;  // reused between requests
  int64_t next_request_ = 0;          // batch requests generated
  int64_t draws_ = 0;                 // requests drawn (batch and interactive)
  int64_t interactive_requests_ = 0;
};

struct ShopSummary {
  std::string train_file;
  std::string holdout_file;
  std::string info_file;
  std::vector<std::string> columns;
  int64_t requests = 0;
  int64_t train_examples = 0;
  int64_t holdout_examples = 0;
  int64_t train_positives = 0;
  int64_t holdout_positives = 0;
  double train_mean_oracle = 0;  // mean oracle; ~ the positive rate
  double holdout_mean_oracle = 0;
  double oracle_auc_train = 0;  // AUC of the oracle against the labels
  double oracle_auc_holdout = 0;
  // The label:buy column (clicked and bought): positives and the AUC of
  // its oracle, P(click) * P(buy | click).
  int64_t train_buys = 0;
  int64_t holdout_buys = 0;
  double oracle_auc_buy_holdout = 0;
  // ... and of P(buy | click) among the clicked holdout impressions (what a
  // CVR model can reach on them).
  double oracle_auc_cvr_holdout = 0;
  int64_t split_time = 0;  // time of the first holdout request
  std::vector<int> trending_categories;
  double seconds = 0;  // wall time of the generation
};

// Generates the shop into out_dir (created if missing; the files are written
// atomically). InvalidArgument for a bad config; the writer's error on I/O
// failure.
StatusOr<ShopSummary> WriteSyntheticShop(const ShopConfig& config, const std::string& out_dir);

// One-line JSON object with the summary's counts and oracle AUCs.
std::string ShopSummaryJson(const ShopSummary& summary);

}  // namespace freshet
