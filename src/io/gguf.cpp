// GGUF reader (format summary in gguf.h).
//
// The parser walks the bytes once with a bounds-checked cursor. Every count read
// from the file (n_kv, n_tensors, array and string lengths) is compared with the
// bytes left before anything is allocated for it, using the smallest encoding an
// item can have; so memory stays proportional to the file size and a corrupt
// file ends in an Error naming the file, the field and the offset.
#include "io/gguf.h"

#include <bit>
#include <cstring>
#include <iterator>
#include <type_traits>
#include <utility>

#include "io/quote.h"

namespace duet {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is read in place as little-endian");

// GGUF metadata value types (gguf_type in ggml).
enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
constexpr uint32_t kNumValueTypes = 13;

constexpr uint32_t kMaxDims = 4;     // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;  // bounds recursion on nested arrays
constexpr uint64_t kDefaultAlignment = 32;

// Smallest encoding of one value of `type`, so `count * min` bounds the bytes
// that `count` values need.
uint64_t min_value_bytes(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool: return 1;
    case kU16:
    case kI16: return 2;
    case kU32:
    case kI32:
    case kF32: return 4;
    case kU64:
    case kI64:
    case kF64: return 8;
    case kString: return 8;     // u64 length
    case kArray: return 4 + 8;  // u32 element type + u64 length
  }
  return 1;
}
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;                  // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, 1 dim, type, offset

// ggml_type names, so an unsupported tensor names its format ("q5_K"), not just a number.
const char* ggml_type_name(uint32_t id) {
  // clang-format off
  static const char* const kNames[] = {
      "f32", "f16", "q4_0", "q4_1", "q4_2 (removed)", "q4_3 (removed)", "q5_0", "q5_1",
      "q8_0", "q8_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs",
      "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64",
      "f64", "iq1_m", "bf16"};
  // clang-format on
  return id < std::size(kNames) ? kNames[id] : "unknown";
}

// Bounds-checked little-endian cursor over the file bytes.
class Reader {
 public:
  Reader(const std::string& name, const uint8_t* data, uint64_t size)
      : name_(name), data_(data), size_(size) {}

  // Where the cursor is, for messages: "key 'general.name'", "tensor #3 'output.weight'".
  std::string context;

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  uint64_t size() const { return size_; }

  template <class... Args>
  Error error(const Args&... args) const {
    return make_error(name_, ": ", args...);
  }

  Status need(uint64_t n, const char* what) const {
    if (n <= remaining()) return ok_status();
    return error("truncated file: ", what, context.empty() ? "" : " of ", context, " needs ", n,
                 " bytes at offset ", pos_, " but the file ends at ", size_);
  }

  template <class T>
  Result<T> read(const char* what) {
    DUET_TRY(need(sizeof(T), what));
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  Result<std::string> read_string(const char* what) {
    DUET_ASSIGN_OR_RETURN(const uint64_t len, read<uint64_t>(what));
    if (len > remaining()) {
      return error(what, context.empty() ? "" : " of ", context, " has length ", len, " at offset ",
                   pos_ - 8, " but only ", remaining(), " bytes remain");
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const std::string& name_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

template <class T>
Status read_int(Reader& r, GgufValue* out) {
  DUET_ASSIGN_OR_RETURN(const T v, r.read<T>("integer value"));
  if constexpr (std::is_same_v<T, uint64_t>) {
    if (v > static_cast<uint64_t>(INT64_MAX)) {
      return r.error(r.context, ": u64 value ", v, " exceeds the int64 range duet stores");
    }
  }
  out->kind = GgufValue::Kind::Int;
  out->i = static_cast<int64_t>(v);
  return ok_status();
}

template <class T>
Status read_float(Reader& r, GgufValue* out) {
  DUET_ASSIGN_OR_RETURN(const T v, r.read<T>("float value"));
  out->kind = GgufValue::Kind::Float;
  out->f = static_cast<double>(v);
  return ok_status();
}

Status read_value(Reader& r, uint32_t type, int depth, GgufValue* out) {
  out->type = type;
  switch (type) {
    case kU8: return read_int<uint8_t>(r, out);
    case kI8: return read_int<int8_t>(r, out);
    case kU16: return read_int<uint16_t>(r, out);
    case kI16: return read_int<int16_t>(r, out);
    case kU32: return read_int<uint32_t>(r, out);
    case kI32: return read_int<int32_t>(r, out);
    case kU64: return read_int<uint64_t>(r, out);
    case kI64: return read_int<int64_t>(r, out);
    case kF32: return read_float<float>(r, out);
    case kF64: return read_float<double>(r, out);
    case kBool: {
      DUET_ASSIGN_OR_RETURN(const uint8_t v, r.read<uint8_t>("bool value"));
      if (v > 1)
        return r.error(r.context, ": bool value at offset ", r.pos() - 1, " is ", int(v),
                       ", expected 0 or 1");
      out->kind = GgufValue::Kind::Bool;
      out->b = v == 1;
      return ok_status();
    }
    case kString: {
      out->kind = GgufValue::Kind::String;
      DUET_ASSIGN_OR_RETURN(out->s, r.read_string("string value"));
      return ok_status();
    }
    case kArray: {
      DUET_ASSIGN_OR_RETURN(const uint32_t elem_type, r.read<uint32_t>("array element type"));
      if (elem_type >= kNumValueTypes) {
        return r.error(r.context, ": array element type ", elem_type, " at offset ", r.pos() - 4,
                       " is not a GGUF value type (expected 0 to ", kNumValueTypes - 1, ")");
      }
      if (elem_type == kArray && depth + 1 >= kMaxArrayNesting) {
        return r.error(r.context, ": arrays nested deeper than ", kMaxArrayNesting, " levels");
      }
      DUET_ASSIGN_OR_RETURN(const uint64_t len, r.read<uint64_t>("array length"));
      const uint64_t min_bytes = min_value_bytes(elem_type);
      if (len > r.remaining() / min_bytes) {
        return r.error(r.context, ": array length ", len, " at offset ", r.pos() - 8,
                       " needs at least ", min_bytes, " bytes per element but only ", r.remaining(),
                       " bytes remain");
      }
      out->kind = GgufValue::Kind::Array;
      out->element_type = elem_type;
      out->array.resize(len);
      for (GgufValue& elem : out->array) DUET_TRY(read_value(r, elem_type, depth + 1, &elem));
      return ok_status();
    }
  }
  return r.error(r.context, ": value type ", type, " at offset ", r.pos() - 4,
                 " is not a GGUF value type (expected 0 to ", kNumValueTypes - 1, ")");
}

Status read_header(Reader& r, uint32_t* version, uint64_t* n_tensors, uint64_t* n_kv) {
  if (r.size() == 0) return r.error("empty file (0 bytes), expected a GGUF header");
  DUET_ASSIGN_OR_RETURN(const uint32_t magic, r.read<uint32_t>("magic"));
  if (std::memcmp(&magic, "GGUF", 4) != 0) {
    char got[5] = {};
    std::memcpy(got, &magic, 4);
    for (char& c : got)
      if (c != 0 && (c < 32 || c > 126)) c = '?';
    return r.error("not a GGUF file: magic is '", got, "', expected 'GGUF'");
  }
  DUET_ASSIGN_OR_RETURN(*version, r.read<uint32_t>("version"));
  if (*version != 2 && *version != 3) {
    const uint32_t swapped = __builtin_bswap32(*version);
    return r.error("unsupported GGUF version ", *version, ", expected 2 or 3",
                   swapped == 2 || swapped == 3 ? " (this looks like a big-endian GGUF)"
                                                : " (re-convert with a current llama.cpp)");
  }
  DUET_ASSIGN_OR_RETURN(*n_tensors, r.read<uint64_t>("tensor count"));
  DUET_ASSIGN_OR_RETURN(*n_kv, r.read<uint64_t>("metadata count"));
  if (*n_kv > r.remaining() / kMinKvBytes) {
    return r.error("metadata count ", *n_kv, " needs at least ", kMinKvBytes,
                   " bytes each but only ", r.remaining(), " bytes follow the header");
  }
  if (*n_tensors > r.remaining() / kMinTensorInfoBytes) {
    return r.error("tensor count ", *n_tensors, " needs at least ", kMinTensorInfoBytes,
                   " bytes each but only ", r.remaining(), " bytes follow the header");
  }
  return ok_status();
}

// The part of a tensor info that does not depend on where the data section starts.
struct RawTensor {
  TensorInfo info;
  uint64_t offset = 0;  // relative to the data section
};

Result<RawTensor> read_tensor_info(Reader& r, uint64_t alignment) {
  RawTensor t;
  DUET_ASSIGN_OR_RETURN(t.info.name, r.read_string("tensor name"));
  r.context = str_cat("tensor ", quote(t.info.name));
  const std::string name = quote(t.info.name);
  DUET_ASSIGN_OR_RETURN(const uint32_t n_dims, r.read<uint32_t>("n_dims"));
  if (n_dims < 1 || n_dims > kMaxDims) {
    return r.error("tensor ", name, " has n_dims ", n_dims, ", expected 1 to ", kMaxDims);
  }
  // ne[0] is contiguous; shape is outermost first, so it is ne reversed.
  t.info.shape.assign(n_dims, 0);
  int64_t numel = 1;
  for (uint32_t i = 0; i < n_dims; ++i) {
    DUET_ASSIGN_OR_RETURN(const uint64_t ne, r.read<uint64_t>("dimension"));
    if (ne == 0 || ne > static_cast<uint64_t>(INT64_MAX)) {
      return r.error("tensor ", name, " has ne[", i, "] = ", ne, ", expected 1 to ", INT64_MAX);
    }
    if (__builtin_mul_overflow(numel, static_cast<int64_t>(ne), &numel)) {
      return r.error("tensor ", name, ": element count overflows int64 at ne[", i, "] = ", ne);
    }
    t.info.shape[n_dims - 1 - i] = static_cast<int64_t>(ne);
  }
  DUET_ASSIGN_OR_RETURN(const uint32_t type, r.read<uint32_t>("ggml type"));
  const std::optional<DType> dtype = dtype_from_gguf(type);
  if (!dtype) {
    return r.error("tensor ", name, " has ggml type ", type, " (", ggml_type_name(type),
                   "), which duet cannot read (supported: f32, f16, bf16, q8_0, q4_0, q4_1, "
                   "q4_K, q6_K)");
  }
  t.info.dtype = *dtype;
  const int64_t ne0 = t.info.shape.back();
  if (ne0 % dtype_block_elems(*dtype) != 0) {
    return r.error("tensor ", name, ": ne[0] = ", ne0, " is not a multiple of the ",
                   dtype_name(*dtype), " block size ", dtype_block_elems(*dtype));
  }
  const std::optional<uint64_t> row_bytes = dtype_row_bytes(*dtype, ne0);
  if (!row_bytes ||
      __builtin_mul_overflow(*row_bytes, static_cast<uint64_t>(numel / ne0), &t.info.nbytes)) {
    return r.error("tensor ", name, ": byte size overflows uint64");
  }
  DUET_ASSIGN_OR_RETURN(t.offset, r.read<uint64_t>("data offset"));
  if (t.offset % alignment != 0) {
    return r.error("tensor ", name, " data offset ", t.offset,
                   " is not a multiple of the alignment ", alignment);
  }
  return t;
}

}  // namespace

Result<GgufFile> GgufFile::open(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(MappedFile file, MappedFile::open(path));
  DUET_ASSIGN_OR_RETURN(GgufFile gguf, parse(path, file.data(), file.size()));
  // Moving the mapping keeps its address, so the tensor pointers stay valid.
  gguf.file_ = std::move(file);
  return gguf;
}

Result<GgufFile> GgufFile::parse(const std::string& name, const uint8_t* data, uint64_t size) {
  GgufFile gguf;
  gguf.name_ = name;
  Reader r(gguf.name_, data, size);

  uint64_t n_tensors = 0, n_kv = 0;
  DUET_TRY(read_header(r, &gguf.version_, &n_tensors, &n_kv));

  for (uint64_t k = 0; k < n_kv; ++k) {
    r.context = str_cat("metadata key #", k);
    DUET_ASSIGN_OR_RETURN(std::string key, r.read_string("key"));
    r.context = str_cat("key ", quote(key));
    DUET_ASSIGN_OR_RETURN(const uint32_t type, r.read<uint32_t>("value type"));
    GgufValue value;
    DUET_TRY(read_value(r, type, 0, &value));
    if (!gguf.metadata_.emplace(key, std::move(value)).second) {
      return r.error("duplicate metadata key ", quote(key));
    }
  }

  if (const GgufValue* align = gguf.find("general.alignment")) {
    if (align->kind != GgufValue::Kind::Int || align->i <= 0 ||
        !std::has_single_bit(static_cast<uint64_t>(align->i))) {
      return r.error(
          "general.alignment must be a nonzero power of two, got ",
          align->kind == GgufValue::Kind::Int ? std::to_string(align->i) : "a non-integer");
    }
    gguf.alignment_ = static_cast<uint64_t>(align->i);
  } else {
    gguf.alignment_ = kDefaultAlignment;
  }

  if (n_tensors > r.remaining() / kMinTensorInfoBytes) {
    return r.error("tensor count ", n_tensors, " needs at least ", kMinTensorInfoBytes,
                   " bytes each but only ", r.remaining(), " bytes follow the metadata");
  }
  std::vector<RawTensor> raw;
  raw.reserve(n_tensors);
  for (uint64_t t = 0; t < n_tensors; ++t) {
    r.context = str_cat("tensor info #", t);
    DUET_ASSIGN_OR_RETURN(RawTensor info, read_tensor_info(r, gguf.alignment_));
    if (!gguf.tensor_index_.emplace(info.info.name, raw.size()).second) {
      return r.error("duplicate tensor name ", quote(info.info.name));
    }
    raw.push_back(std::move(info));
  }

  // Data starts at the next multiple of the alignment. pos <= size < 2^63 and
  // alignment <= 2^62, so the sum cannot wrap.
  const uint64_t data_start = (r.pos() + gguf.alignment_ - 1) / gguf.alignment_ * gguf.alignment_;
  gguf.tensors_.reserve(raw.size());
  for (RawTensor& t : raw) {
    const bool fits = data_start <= size && t.offset <= size - data_start &&
                      t.info.nbytes <= size - data_start - t.offset;
    if (!fits) {
      return r.error("tensor ", quote(t.info.name), " data [offset ", t.offset, ", ", t.info.nbytes,
                     " bytes] (data section starts at byte ", data_start,
                     ") runs past the end of the file (", size, " bytes)");
    }
    t.info.data = data + data_start + t.offset;
    gguf.tensors_.push_back(std::move(t.info));
  }
  return gguf;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->kind != GgufValue::Kind::Int) return std::nullopt;
  return v->i;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->kind == GgufValue::Kind::Float) return v->f;
  if (v->kind == GgufValue::Kind::Int) return static_cast<double>(v->i);
  return std::nullopt;
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->kind != GgufValue::Kind::Bool) return std::nullopt;
  return v->b;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->kind != GgufValue::Kind::String) return std::nullopt;
  return v->s;
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->kind != GgufValue::Kind::Array) return std::nullopt;
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) {
    if (e.kind != GgufValue::Kind::String) return std::nullopt;
    out.push_back(e.s);
  }
  return out;
}

// Accepts Int elements as get_float does (some converters store scores as ints).
std::optional<std::vector<float>> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->kind != GgufValue::Kind::Array) return std::nullopt;
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) {
    if (e.kind == GgufValue::Kind::Float) {
      out.push_back(static_cast<float>(e.f));
    } else if (e.kind == GgufValue::Kind::Int) {
      out.push_back(static_cast<float>(e.i));
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->kind != GgufValue::Kind::Array) return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (const GgufValue& e : v->array) {
    if (e.kind != GgufValue::Kind::Int) return std::nullopt;
    out.push_back(e.i);
  }
  return out;
}

const TensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace duet
