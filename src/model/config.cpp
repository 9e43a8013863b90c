#include "model/config.h"

#include <cmath>

namespace duet {

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
  }
  return "?";
}

// HF's _compute_llama3_parameters, expressed as divisors of the unscaled
// frequencies (the form GGUF stores in rope_freqs.weight): long wavelengths are
// slowed by `factor`, short ones kept, and the band between is interpolated.
std::vector<float> llama3_rope_freq_factors(int head_dim, float theta, float factor,
                                            float low_freq_factor, float high_freq_factor,
                                            int original_max_position) {
  const double pi = 3.14159265358979323846;
  const double low_freq_wavelen = original_max_position / low_freq_factor;
  const double high_freq_wavelen = original_max_position / high_freq_factor;
  std::vector<float> factors(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    const double inv_freq = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
    const double wavelen = 2 * pi / inv_freq;
    double scaled;
    if (wavelen < high_freq_wavelen) {
      scaled = inv_freq;
    } else if (wavelen > low_freq_wavelen) {
      scaled = inv_freq / factor;
    } else {
      const double smooth = (original_max_position / wavelen - low_freq_factor) /
                            (high_freq_factor - low_freq_factor);
      scaled = (1 - smooth) * inv_freq / factor + smooth * inv_freq;
    }
    factors[i] = static_cast<float>(inv_freq / scaled);
  }
  return factors;
}

}  // namespace duet
