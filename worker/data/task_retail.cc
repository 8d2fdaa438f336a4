// retail-purchase (see worker/data/task.h).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "worker/data/internal/parse_util.h"
#include "worker/data/internal/task_util.h"
#include "worker/data/raw_readers.h"

namespace freshet {
namespace internal {
namespace {

constexpr int kNegatives = 4;          // per positive, train and holdout files
constexpr int kRankingNegatives = 99;  // per holdout positive, ranking file
constexpr int kHistory = 20;           // recent purchased items
constexpr uint64_t kNegativeSeed = 1;
constexpr uint64_t kRankingSeed = 2;

// Interns strings to dense ids in order of first appearance.
class Interner {
 public:
  int32_t Id(const std::string& s) {
    auto [it, inserted] = ids_.emplace(s, static_cast<int32_t>(names_.size()));
    if (inserted) names_.push_back(s);
    return it->second;
  }
  const std::string& Name(int32_t id) const { return names_[id]; }
  size_t size() const { return names_.size(); }

 private:
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<std::string> names_;
};

// The distinct lower-cased [a-z0-9]+ words of `s`, space-separated in order.
std::string DescriptionTokens(const std::string& s) {
  std::vector<std::string> words;
  std::string w;
  for (size_t i = 0; i <= s.size(); ++i) {
    const unsigned char c = i < s.size() ? static_cast<unsigned char>(s[i]) : ' ';
    if (c < 128 && std::isalnum(c)) {
      w.push_back(static_cast<char>(std::tolower(c)));
    } else if (!w.empty()) {
      if (std::find(words.begin(), words.end(), w) == words.end()) words.push_back(w);
      w.clear();
    }
  }
  std::string out;
  for (const std::string& x : words) out += (out.empty() ? "" : " ") + x;
  return out;
}

// floor(log2(price)) as a token, exact (frexp), "nonpositive" for <= 0.
std::string PriceBucket(double price) {
  if (!(price > 0)) return "nonpositive";
  int exp;
  std::frexp(price, &exp);  // price = m * 2^exp, m in [0.5, 1)
  return std::to_string(exp - 1);
}

struct Row {
  int32_t item;
  int32_t description;  // id of the tokenized description
  double price;
};

struct Invoice {
  int64_t time = 0;  // earliest InvoiceDate of its kept rows
  int64_t customer = 0;
  int32_t country = 0;
  std::vector<Row> rows;  // kept rows in file order
};

// A customer's last kHistory purchased items.
struct History {
  int64_t count = 0;
  int32_t items[kHistory] = {};
  void Add(int32_t item) { items[count++ % kHistory] = item; }
};

}  // namespace

StatusOr<TaskOutput> BuildRetailPurchase(const std::vector<std::string>& inputs,
                                         const std::string& out_dir,
                                         const BadRecordPolicy& policy) {
  TaskInfo info;
  info.Add("task", "retail-purchase");
  TaskOutput output;

  // ---- Read and filter rows, grouped by invoice.
  Interner items, descriptions, countries, invoice_names;
  std::vector<Invoice> invoices;
  std::unordered_map<std::string, int32_t> description_ids;  // raw text -> id
  int64_t rows_read = 0, kept = 0, no_customer = 0, cancellations = 0, nonpositive = 0;
  {
    FRESHET_ASSIGN_OR_RETURN(auto reader, RetailReader::OpenFiles(inputs, policy));
    RetailRow r;
    while (true) {
      FRESHET_ASSIGN_OR_RETURN(bool more, reader->Next(&r));
      if (!more) break;
      ++rows_read;
      if (r.customer_id < 0) {
        ++no_customer;
        continue;
      }
      if (r.invoice[0] == 'C') {
        ++cancellations;
        continue;
      }
      if (r.quantity <= 0) {
        ++nonpositive;
        continue;
      }
      ++kept;
      const int32_t inv = invoice_names.Id(r.invoice);
      if (inv == static_cast<int32_t>(invoices.size())) {
        invoices.emplace_back();
        invoices.back().time = r.time;
        invoices.back().customer = r.customer_id;
        invoices.back().country = countries.Id(Token(r.country));
      }
      Invoice& invoice = invoices[inv];
      invoice.time = std::min(invoice.time, r.time);
      auto d = description_ids.find(r.description);
      if (d == description_ids.end()) {
        d = description_ids
                .emplace(r.description, descriptions.Id(DescriptionTokens(r.description)))
                .first;
      }
      invoice.rows.push_back({items.Id(Token(r.stock_code)), d->second, r.unit_price});
    }
    info.AddReadStats(reader->file_stats(), &output.bad_records);
  }
  info.Add("rows_read", rows_read);
  info.Add("rows_dropped_no_customer", no_customer);
  info.Add("rows_dropped_cancellation", cancellations);
  info.Add("rows_dropped_quantity_nonpositive", nonpositive);
  info.Add("rows_kept", kept);
  info.Add("invoices", static_cast<int64_t>(invoices.size()));
  info.Add("items", static_cast<int64_t>(items.size()));

  std::vector<int32_t> order(invoices.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return invoices[a].time < invoices[b].time; });

  // ---- Examples, in invoice time order.
  const int64_t holdout_start = FromCivil(2011, 11, 12, 0, 0, 0);
  info.Add("split", "holdout = invoices at or after " + FormatTime(holdout_start));
  const std::vector<std::string> columns = TaskColumnNames("retail-purchase");
  FRESHET_ASSIGN_OR_RETURN(auto writer, SplitWriter::Open(out_dir, columns));
  const std::string ranking_path = out_dir + "/holdout_ranking.examples";
  FRESHET_ASSIGN_OR_RETURN(auto ranking, ExampleWriter::Open(ranking_path, columns));

  const size_t num_items = items.size();
  std::vector<int32_t> seen;  // items seen so far, in order of first sight
  std::vector<char> is_seen(num_items, 0);
  std::vector<char> in_invoice(num_items, 0);
  std::vector<int32_t> last_description(num_items, 0);
  std::vector<double> last_price(num_items, 0);
  std::unordered_map<int64_t, History> histories;
  Rng negative_rng(kNegativeSeed), ranking_rng(kRankingSeed);
  int64_t ranking_groups = 0, ranking_skipped = 0;

  std::vector<const Row*> positives;
  std::vector<int32_t> drawn;
  Example ex;
  ex.values.resize(columns.size());
  // Columns: 0 customer, 1 item, 2 country, 3 price_bucket,
  // 4 description_tokens, 5 recent_items, 6 month, 7 day_of_week, 8 hour.
  auto set_item = [&](int32_t item, int32_t description, double price) {
    ex.values[1] = items.Name(item);
    ex.values[3] = PriceBucket(price);
    ex.values[4] = descriptions.Name(description);
  };
  // Draws up to `want` distinct seen items not in the invoice into `drawn`.
  auto draw = [&](Rng* rng, int want, int64_t candidates) {
    drawn.clear();
    if (candidates <= want) {
      for (int32_t item : seen) {
        if (!in_invoice[item]) drawn.push_back(item);
      }
      return;
    }
    while (static_cast<int>(drawn.size()) < want) {
      const int32_t item = seen[rng->Uniform(seen.size())];
      if (in_invoice[item] || std::find(drawn.begin(), drawn.end(), item) != drawn.end()) {
        continue;
      }
      drawn.push_back(item);
    }
  };

  for (size_t a = 0; a < order.size();) {
    size_t b = a;
    while (b < order.size() && invoices[order[b]].time == invoices[order[a]].time) ++b;
    for (size_t k = a; k < b; ++k) {
      const Invoice& inv = invoices[order[k]];
      const bool holdout = inv.time >= holdout_start;
      positives.clear();
      int64_t seen_in_invoice = 0;
      for (const Row& r : inv.rows) {
        if (in_invoice[r.item]) continue;
        in_invoice[r.item] = 1;
        seen_in_invoice += is_seen[r.item];
        positives.push_back(&r);
      }
      const int64_t candidates = static_cast<int64_t>(seen.size()) - seen_in_invoice;

      const CivilTime c = ToCivil(inv.time);
      ex.time = inv.time;
      ex.user = std::to_string(inv.customer);
      ex.values[0] = ex.user;
      ex.values[2] = countries.Name(inv.country);
      std::string& recent = ex.values[5];
      recent.clear();
      auto h = histories.find(inv.customer);
      if (h != histories.end()) {
        const History& hist = h->second;
        const int64_t n = std::min<int64_t>(hist.count, kHistory);
        for (int64_t i = 0; i < n; ++i) {
          if (i > 0) recent.push_back(' ');
          recent += items.Name(hist.items[(hist.count - 1 - i) % kHistory]);
        }
      }
      ex.values[6] = std::to_string(c.month);
      ex.values[7] = std::to_string(c.day_of_week);
      ex.values[8] = std::to_string(c.hour);

      for (const Row* p : positives) {
        ex.label = 1;
        set_item(p->item, p->description, p->price);
        FRESHET_RETURN_IF_ERROR(writer->Write(ex, holdout));
        draw(&negative_rng, kNegatives, candidates);
        ex.label = 0;
        for (int32_t item : drawn) {
          set_item(item, last_description[item], last_price[item]);
          FRESHET_RETURN_IF_ERROR(writer->Write(ex, holdout));
        }
        if (!holdout) continue;
        if (candidates < kRankingNegatives) {
          ++ranking_skipped;
          continue;
        }
        ex.label = 1;
        set_item(p->item, p->description, p->price);
        FRESHET_RETURN_IF_ERROR(ranking->Write(ex));
        draw(&ranking_rng, kRankingNegatives, candidates);
        ex.label = 0;
        for (int32_t item : drawn) {
          set_item(item, last_description[item], last_price[item]);
          FRESHET_RETURN_IF_ERROR(ranking->Write(ex));
        }
        ++ranking_groups;
      }
      for (const Row& r : inv.rows) in_invoice[r.item] = 0;
    }
    // Later invoices see this second's rows.
    for (size_t k = a; k < b; ++k) {
      const Invoice& inv = invoices[order[k]];
      History& hist = histories[inv.customer];
      for (const Row& r : inv.rows) {
        if (!is_seen[r.item]) {
          is_seen[r.item] = 1;
          seen.push_back(r.item);
        }
        last_description[r.item] = r.description;
        last_price[r.item] = r.price;
        if (!in_invoice[r.item]) {  // each (invoice, item) once
          in_invoice[r.item] = 1;
          hist.Add(r.item);
        }
      }
      for (const Row& r : inv.rows) in_invoice[r.item] = 0;
    }
    a = b;
  }
  FRESHET_RETURN_IF_ERROR(writer->Close(&output));
  FRESHET_RETURN_IF_ERROR(ranking->Close());
  info.AddOutput(output);
  info.Add("negatives_per_positive",
           std::to_string(kNegatives) + " (seed " + std::to_string(kNegativeSeed) + ")");
  info.Add("ranking_file", ranking_path);
  info.Add("ranking_format", "groups of " + std::to_string(kRankingNegatives + 1) +
                                 " consecutive lines: the holdout positive, then " +
                                 std::to_string(kRankingNegatives) + " sampled negatives (seed " +
                                 std::to_string(kRankingSeed) + ")");
  info.Add("ranking_groups", ranking_groups);
  info.Add("ranking_positives_skipped", ranking_skipped);
  FRESHET_RETURN_IF_ERROR(info.Write(out_dir));
  return output;
}

}  // namespace internal
}  // namespace freshet
