// Special-token partitioning (see special_tokens.h).
#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace duet {

SpecialTokenSplitter::SpecialTokenSplitter(const Vocab& vocab) {
  for (int32_t id = 0; id < vocab.size(); ++id) {
    if (is_special_type(vocab.types[id]) && !vocab.texts[id].empty()) specials_.push_back(id);
  }
  // Ties in length cannot overlap at one position with equal text, so the
  // tie order (unspecified in llama.cpp) only matters for partial overlaps.
  std::stable_sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
    return vocab.texts[a].size() > vocab.texts[b].size();
  });
}

std::vector<Fragment> SpecialTokenSplitter::split(std::string_view text, const Vocab& vocab,
                                                  bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({kNoToken, text});
  for (int32_t id : specials_) {
    if (!parse_special && vocab.types[id] != TokenType::kUserDefined) continue;
    const std::string_view special = vocab.texts[id];
    std::vector<Fragment> next;
    bool found_any = false;
    for (const Fragment& fragment : fragments) {
      if (fragment.token != kNoToken) {
        next.push_back(fragment);
        continue;
      }
      std::string_view rest = fragment.text;
      for (size_t at = rest.find(special); at != std::string_view::npos; at = rest.find(special)) {
        found_any = true;
        if (at > 0) next.push_back({kNoToken, rest.substr(0, at)});
        next.push_back({id, {}});
        rest.remove_prefix(at + special.size());
      }
      if (!rest.empty()) next.push_back({kNoToken, rest});
    }
    if (found_any) fragments = std::move(next);
  }
  return fragments;
}

}  // namespace duet
