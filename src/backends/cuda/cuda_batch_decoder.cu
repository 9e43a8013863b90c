// CudaBatchDecoder: BatchDecoder (runtime/batch_decoder.h) over a CudaModel
// whose sequences are the server's slots.
#include "backends/cuda/cuda_batch_decoder.h"

#include <algorithm>

#include "backends/cuda/cuda_model.h"

namespace duet {
namespace {

class CudaBatchDecoder final : public BatchDecoder {
 public:
  explicit CudaBatchDecoder(std::unique_ptr<CudaModel> model) : model_(std::move(model)) {}

  int slots() const override { return model_->max_batch(); }
  int capacity() const override { return model_->max_context(); }
  int vocab_size() const override { return model_->config().vocab_size; }
  std::string device_name() const override { return "cuda (" + cuda_device_name() + ", bf16)"; }
  int length(int slot) const override { return model_->length(slot); }
  void reset(int slot) override { model_->reset(slot); }

  Status prefill(int slot, const int32_t* tokens, int T, LogitsMode mode, std::vector<float>& logits) override {
    return model_->prefill(slot, tokens, T, mode, logits);
  }
  Status decode(const int32_t* slot_ids, const int32_t* tokens, int B, std::vector<float>& logits) override {
    return model_->decode_sequences(slot_ids, tokens, B, logits);
  }
  Status decode_top(const int32_t* slot_ids, const int32_t* tokens, int B, const int32_t* top,
                    DecodeSelection& out) override {
    static_assert(kMaxTopCandidates == CudaModel::kMaxSelect, "DecodeSelection's stride is the model's");
    out.fit(B, vocab_size());
    return model_->decode_select(slot_ids, tokens, B, top, out.values.data(), out.ids.data(), out.rows.data());
  }

 private:
  std::unique_ptr<CudaModel> model_;
};

}  // namespace

Result<std::unique_ptr<BatchDecoder>> make_cuda_batch_decoder(const ModelWeights& weights, int slots, int capacity,
                                                              int max_prefill) {
  CudaModelOptions options;
  options.max_batch = slots;
  options.max_context = capacity;
  options.max_prefill = std::min(capacity, max_prefill);
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<CudaModel> model, CudaModel::create(weights, options));
  return std::unique_ptr<BatchDecoder>(new CudaBatchDecoder(std::move(model)));
}

}  // namespace duet
