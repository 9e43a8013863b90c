// CudaDecoder: Decoder (runtime/decoder.h) over a CudaModel holding one sequence.
#include "backends/cuda/cuda_decoder.h"

#include <algorithm>

#include "backends/cuda/cuda_model.h"

namespace duet {
namespace {

class CudaDecoder final : public Decoder {
 public:
  CudaDecoder(std::unique_ptr<CudaModel> model, int capacity) : model_(std::move(model)), capacity_(capacity) {}

  Status forward(const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    if (T == 1) return model_->decode(tokens, 1, logits);
    return model_->prefill(0, tokens, T, mode, logits);
  }
  void reset() override { model_->reset(0); }
  int position() const override { return model_->length(0); }
  int capacity() const override { return capacity_; }
  int vocab_size() const override { return model_->config().vocab_size; }
  std::string device_name() const override { return "cuda (" + cuda_device_name() + ", bf16)"; }

  // Log-softmax on the GPU: 8 bytes per position come back instead of a row of V logits.
  Status score_sequences(const std::vector<std::vector<int32_t>>& sequences,
                         std::vector<SequenceScores>& scores) override {
    scores.assign(sequences.size(), {});
    for (size_t s = 0; s < sequences.size(); ++s) {
      const std::vector<int32_t>& tokens = sequences[s];
      if (tokens.size() < 2) return make_error("score_sequences: sequence ", s, " has fewer than 2 tokens");
      if (static_cast<int>(tokens.size()) > capacity_) {
        return make_error("sequence of ", tokens.size(), " tokens exceeds the context of ", capacity_);
      }
      scores[s].log_probs.resize(tokens.size() - 1);
      scores[s].argmax.resize(tokens.size() - 1);
      DUET_TRY(model_->score(0, tokens.data(), static_cast<int>(tokens.size()), scores[s].log_probs.data(),
                             scores[s].argmax.data()));
    }
    return ok_status();
  }

 private:
  std::unique_ptr<CudaModel> model_;
  int capacity_;
};

}  // namespace

Result<std::unique_ptr<Decoder>> make_cuda_decoder(const ModelWeights& weights, int capacity) {
  CudaModelOptions options;
  options.max_batch = 1;
  options.max_context = capacity;
  options.max_prefill = std::min(capacity, 1024);
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<CudaModel> model, CudaModel::create(weights, options));
  return std::unique_ptr<Decoder>(new CudaDecoder(std::move(model), capacity));
}

}  // namespace duet
