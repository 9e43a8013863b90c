// Tokenizer::from_hf_json: Hugging Face tokenizer.json (+ tokenizer_config.json).
//
// Supported: model "BPE" (vocab, merges as "a b" strings or [a, b] pairs,
// byte_fallback, ignore_merges, unk_token); added_tokens (special -> control,
// else user-defined); pre_tokenizer ByteLevel / Split(Regex|String,
// Isolated) / Digits / Metaspace and Sequences of them; normalizer
// Prepend("▁") + Replace(" ", "▁") (Llama 2 style) or NFC. The decoder entry
// is not read: decoding follows from the byte-level / ▁ choices above.
#include <algorithm>
#include <fstream>
#include <sstream>

#include "io/json_input.h"
#include "io/quote.h"
#include "tokenizer/tokenizer.h"

namespace duet {

namespace {

using nlohmann::json;

constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kEscapedSpace = "\xE2\x96\x81";

struct PreTokenizerSpec {
  std::vector<std::string> regexes;
  bool byte_level = false;
  bool escape_whitespace = false;
  bool add_space_prefix = false;
};

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot open ", path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string quote_regex(const std::string& literal) { return "\\Q" + literal + "\\E"; }

Status add_pre_tokenizer(const json& node, PreTokenizerSpec& spec) {
  if (node.is_null()) return ok_status();
  const std::string type = node.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const json& child : node.at("pretokenizers")) DUET_TRY(add_pre_tokenizer(child, spec));
  } else if (type == "ByteLevel") {
    if (node.value("add_prefix_space", false)) {
      return make_error("tokenizer.json: ByteLevel add_prefix_space=true is not supported");
    }
    if (node.value("use_regex", true)) spec.regexes.push_back(kGpt2Regex);
    spec.byte_level = true;
  } else if (type == "Split") {
    const std::string behavior = node.value("behavior", "Isolated");
    if (behavior != "Isolated" || node.value("invert", false)) {
      return make_error("tokenizer.json: Split behavior ", quote(behavior), " (or invert) is not supported; expected Isolated");
    }
    const json& pattern = node.at("pattern");
    if (pattern.contains("Regex")) {
      spec.regexes.push_back(canonical_split_regex(pattern.at("Regex").get<std::string>()));
    } else {
      spec.regexes.push_back(quote_regex(pattern.at("String").get<std::string>()));
    }
  } else if (type == "Digits") {
    spec.regexes.push_back(node.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Metaspace") {
    if (node.value("replacement", std::string(kEscapedSpace)) != kEscapedSpace) {
      return make_error("tokenizer.json: Metaspace replacement other than U+2581 is not supported");
    }
    spec.escape_whitespace = true;
    // split=true: words start at each ▁ (the ▁ joins the text after it).
    if (node.value("split", true)) spec.regexes.push_back(R"(\x{2581}[^\x{2581}]*|[^\x{2581}]+)");
    spec.add_space_prefix = node.contains("prepend_scheme") ? node.at("prepend_scheme").get<std::string>() != "never"
                                                           : node.value("add_prefix_space", true);
  } else {
    return make_error("tokenizer.json: unsupported pre_tokenizer type ", quote(type));
  }
  return ok_status();
}

Status add_normalizer(const json& node, PreTokenizerSpec& spec) {
  if (node.is_null()) return ok_status();
  const std::string type = node.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const json& child : node.at("normalizers")) DUET_TRY(add_normalizer(child, spec));
  } else if (type == "Prepend" && node.at("prepend").get<std::string>() == kEscapedSpace) {
    spec.add_space_prefix = true;
  } else if (type == "Replace" && node.at("pattern").value("String", "") == " " &&
             node.at("content").get<std::string>() == kEscapedSpace) {
    spec.escape_whitespace = true;
  } else if (type == "NFC") {
    // Qwen2 declares NFC; llama.cpp does not normalise either, and ids must match it.
  } else {
    return make_error("tokenizer.json: unsupported normalizer ", quote(node.dump()));
  }
  return ok_status();
}

// A token named in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
  return std::nullopt;
}

std::string config_chat_template(const json& config) {
  if (!config.contains("chat_template")) return "";
  const json& t = config.at("chat_template");
  if (t.is_string()) return t.get<std::string>();
  // A list of named templates: take "default", else the first.
  for (const json& entry : t) {
    if (entry.value("name", "") == "default") return entry.at("template").get<std::string>();
  }
  return t.empty() ? "" : t.at(0).at("template").get<std::string>();
}

}  // namespace

Result<Tokenizer> Tokenizer::from_hf_files(const std::string& tokenizer_json_path,
                                           const std::string& tokenizer_config_json_path) {
  DUET_ASSIGN_OR_RETURN(const std::string tokenizer_json, read_file(tokenizer_json_path));
  std::string config_json;
  if (!tokenizer_config_json_path.empty()) {
    DUET_ASSIGN_OR_RETURN(config_json, read_file(tokenizer_config_json_path));
  }
  return from_hf_json(tokenizer_json, config_json);
}

Result<Tokenizer> Tokenizer::from_hf_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json) {
  Result<json> parsed_root = parse_json_input("tokenizer.json", tokenizer_json);
  if (!parsed_root.ok() || !parsed_root->is_object()) {
    return make_error("tokenizer.json is not a valid JSON object",
                      parsed_root.ok() ? "" : " (" + parsed_root.message() + ")");
  }
  const json& root = *parsed_root;
  json config = json::object();
  if (!tokenizer_config_json.empty()) {
    Result<json> parsed_config = parse_json_input("tokenizer_config.json", tokenizer_config_json);
    if (!parsed_config.ok() || !parsed_config->is_object()) {
      return make_error("tokenizer_config.json is not a valid JSON object",
                        parsed_config.ok() ? "" : " (" + parsed_config.message() + ")");
    }
    config = std::move(*parsed_config);
  }

  // Wrong shapes deep inside the JSON surface as nlohmann exceptions; they
  // all mean "malformed file", so one handler turns them into an Error.
  try {
    const json& model = root.at("model");
    const std::string type = model.value("type", "BPE");
    if (type != "BPE") return make_error("tokenizer.json: unsupported model type ", quote(type), " (supported: BPE)");

    Tokenizer tok;
    // Ids index tables of n entries, so n is checked before anything is
    // allocated: each id is an integer (a float id would be undefined
    // behaviour to convert), and an id no entry names still costs a table
    // slot, so n may not exceed the file's byte count (real vocabs are dense).
    int64_t n = 0;
    const auto id_of_entry = [&](const json& id, const std::string& text) -> Result<int64_t> {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t{1} << 24)) {
        return make_error("tokenizer.json: id ", quote(id.dump()), " of ", quote(text), " is not an integer in 0..2^24-1");
      }
      return id.get<int64_t>();
    };
    const json& vocab = model.at("vocab");
    if (!vocab.is_object()) return make_error("tokenizer.json: model.vocab is not an object of token: id");
    for (const auto& [text, id] : vocab.items()) {
      DUET_ASSIGN_OR_RETURN(const int64_t v, id_of_entry(id, text));
      n = std::max(n, v + 1);
    }
    const auto added_it = root.find("added_tokens");
    const json added = added_it == root.end() || added_it->is_null() ? json::array() : *added_it;
    if (!added.is_array()) return make_error("tokenizer.json: added_tokens is not an array");
    for (const json& t : added) {
      DUET_ASSIGN_OR_RETURN(const int64_t v, id_of_entry(t.at("id"), t.at("content").get<std::string>()));
      n = std::max(n, v + 1);
    }
    if (n == 0) return make_error("tokenizer.json: the vocab is empty");
    if (n > static_cast<int64_t>(tokenizer_json.size())) {
      return make_error("tokenizer.json: largest id ", n - 1, " in a file of ", tokenizer_json.size(),
                        " bytes; ids that sparse mean a corrupt file");
    }

    tok.vocab_.texts.assign(n, "");
    tok.vocab_.scores.assign(n, 0.0f);
    tok.vocab_.types.assign(n, TokenType::kUnused);  // ids no entry names
    const bool byte_fallback = model.value("byte_fallback", false);
    for (const auto& [text, id_json] : vocab.items()) {
      const int64_t id = id_json.get<int64_t>();
      tok.vocab_.texts[id] = text;
      const bool is_byte = byte_fallback && text.size() == 6 && text.rfind("<0x", 0) == 0 && text[5] == '>';
      tok.vocab_.types[id] = is_byte ? TokenType::kByte : TokenType::kNormal;
    }
    for (const json& t : added) {
      const int64_t id = t.at("id").get<int64_t>();
      tok.vocab_.texts[id] = t.at("content").get<std::string>();
      tok.vocab_.types[id] = t.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
    }

    int32_t rank = 0;
    for (const json& merge : model.at("merges")) {
      if (merge.is_array()) {
        tok.merges_.add(merge.at(0).get<std::string>(), merge.at(1).get<std::string>(), rank++);
        continue;
      }
      const std::string m = merge.get<std::string>();
      const size_t space = m.find(' ', 1);
      if (space == std::string::npos) return make_error("tokenizer.json: merge ", quote(m), " is not 'left right'");
      tok.merges_.add(std::string_view(m).substr(0, space), std::string_view(m).substr(space + 1), rank++);
    }

    PreTokenizerSpec spec;
    DUET_TRY(add_normalizer(root.value("normalizer", json()), spec));
    DUET_TRY(add_pre_tokenizer(root.value("pre_tokenizer", json()), spec));
    Result<PreTokenizer> pre_tokenizer = PreTokenizer::from_regexes(spec.regexes);
    if (!pre_tokenizer.ok()) return make_error("tokenizer.json: ", pre_tokenizer.message());
    tok.pre_tokenizer_ = std::move(*pre_tokenizer);
    tok.algorithm_ = Algorithm::kMergeRanks;
    tok.byte_level_ = spec.byte_level;
    tok.escape_whitespace_ = spec.escape_whitespace;
    tok.add_space_prefix_ = spec.add_space_prefix;
    tok.byte_fallback_ = byte_fallback;
    tok.ignore_merges_ = model.value("ignore_merges", false);

    tok.vocab_.index();
    auto id_of = [&](const std::optional<std::string>& text) {
      if (!text) return kNoToken;
      return tok.vocab_.find(*text).value_or(kNoToken);
    };
    if (model.contains("unk_token") && model.at("unk_token").is_string()) {
      tok.unknown_id_ = id_of(model.at("unk_token").get<std::string>());
    }
    tok.bos_id_ = id_of(config_token(config, "bos_token"));
    tok.eos_id_ = id_of(config_token(config, "eos_token"));
    tok.add_bos_ = config.value("add_bos_token", false) && tok.bos_id_ != kNoToken;
    tok.chat_template_ = config_chat_template(config);
    tok.finish();
    return tok;
  } catch (const json::exception& e) {
    return make_error("tokenizer.json / tokenizer_config.json malformed: ", e.what());
  }
}

}  // namespace duet
