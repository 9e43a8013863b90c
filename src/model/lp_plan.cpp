#include "model/lp_plan.h"

#include "io/quote.h"
#include "io/text_file.h"
#include "model/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

namespace duet {
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

Result<int> parse_layer_index(const std::string& text, const std::string& context) {
  const std::string t = trim(text);
  int value = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size() || value < 0 || value > kMaxLayers) {
    return make_error("bad LP plan ", quote(context), ": ", quote(t), " is not a layer index (expected an integer in 0..",
                      kMaxLayers, ")");
  }
  return value;
}

}  // namespace

std::string LpPlan::describe() const {
  if (pair_starts.empty()) return "none";
  std::string out;
  for (size_t i = 0; i < pair_starts.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(pair_starts[i]);
  }
  return out;
}

Result<LpPlan> parse_lp_range(const std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    return make_error("bad LP range ", quote(text), ": expected START:END, e.g. 10:26");
  }
  DUET_ASSIGN_OR_RETURN(int start, parse_layer_index(text.substr(0, colon), text));
  DUET_ASSIGN_OR_RETURN(int end, parse_layer_index(text.substr(colon + 1), text));
  if (end <= start) {
    return make_error("bad LP range ", quote(text), ": END (", end, ") must be greater than START (", start, ")");
  }
  if ((end - start) % 2 != 0) {
    return make_error("bad LP range ", quote(text), ": it spans ", end - start,
                      " layers, an odd number; a range must hold whole pairs (END is exclusive)");
  }
  LpPlan plan;
  for (int i = start; i < end; i += 2) plan.pair_starts.push_back(i);
  return plan;
}

Result<LpPlan> parse_lp_pairs(const std::string& text) {
  LpPlan plan;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (trim(item).empty()) continue;
    DUET_ASSIGN_OR_RETURN(int start, parse_layer_index(item, text));
    plan.pair_starts.push_back(start);
  }
  if (plan.empty()) return make_error("bad LP pair list ", quote(text), ": no layers named");
  std::sort(plan.pair_starts.begin(), plan.pair_starts.end());
  return plan;
}

Result<LpPlan> parse_lp_plan_text(const std::string& text) {
  LpPlan plan;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    DUET_ASSIGN_OR_RETURN(LpPlan part, line.find(':') != std::string::npos ? parse_lp_range(line)
                                                                           : parse_lp_pairs(line));
    plan.pair_starts.insert(plan.pair_starts.end(), part.pair_starts.begin(), part.pair_starts.end());
  }
  std::sort(plan.pair_starts.begin(), plan.pair_starts.end());
  return plan;
}

Result<LpPlan> read_lp_plan_file(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.ok()) return make_error("LP plan file: ", text.message());
  auto plan = parse_lp_plan_text(text.value());
  if (!plan.ok()) return make_error(path, ": ", plan.message());
  return plan;
}

std::string lp_plan_file_text(const LpPlan& plan, const std::string& comment) {
  std::string out;
  std::stringstream lines(comment);
  std::string line;
  while (std::getline(lines, line)) out += "# " + line + "\n";
  out += plan.describe() == "none" ? "" : plan.describe() + "\n";
  return out;
}

Status validate_lp_plan(const LpPlan& plan, int n_layers) {
  for (size_t k = 0; k < plan.pair_starts.size(); ++k) {
    const int i = plan.pair_starts[k];
    if (i >= n_layers) {
      return make_error("bad LP plan: pair (", i, ",", i + 1, ") is out of range; the model has ", n_layers,
                        " layers (0..", n_layers - 1, ")");
    }
    if (i + 1 >= n_layers) {
      return make_error("bad LP plan: pair (", i, ",", i + 1, ") crosses the end of the model (last layer is ",
                        n_layers - 1, ")");
    }
    if (k > 0 && plan.pair_starts[k - 1] + 1 >= i) {
      const int prev = plan.pair_starts[k - 1];
      return make_error("bad LP plan: pairs (", prev, ",", prev + 1, ") and (", i, ",", i + 1, ") overlap");
    }
  }
  return ok_status();
}

}  // namespace duet
