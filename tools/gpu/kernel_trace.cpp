// A kernel timeline for any CUDA program, CUDA graph nodes included, for machines where Nsight Systems
// cannot make a report (the device tool's image). The CUDA driver loads this library when
// CUDA_INJECTION64_PATH names it and calls InitializeInjection(); from then on CUPTI records every
// kernel's start and end on the GPU clock, and at exit the records go to $DUET_TRACE_CSV
// (default kernel_trace.csv) as one line per kernel:
//   start_ns,end_ns,graph_id,graph_node_id,grid_x,grid_y,grid_z,block_x,name
// CONCURRENT_KERNEL tracing keeps kernels concurrent, so programmatic dependent launches still overlap.
// tools/gpu/kernel_timeline.py turns the CSV into per-kernel times of a decode step.
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct KernelRecord {
  uint64_t start, end, graph_node_id;
  uint32_t graph_id;
  int32_t grid_x, grid_y, grid_z, block_x;
  std::string name;
};

std::mutex records_mutex;
std::vector<KernelRecord>* records = new std::vector<KernelRecord>;  // outlives static destructors
constexpr size_t kBufferBytes = 8 << 20;

void check(CUptiResult result, const char* what) {
  if (result == CUPTI_SUCCESS) return;
  const char* message = nullptr;
  cuptiGetResultString(result, &message);
  std::fprintf(stderr, "kernel_trace: %s failed: %s\n", what, message ? message : "unknown error");
  std::exit(3);
}

std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                                  &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = kBufferBytes;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid_bytes) {
  std::vector<KernelRecord> batch;
  CUpti_Activity* record = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid_bytes, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    const auto* kernel = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    batch.push_back({kernel->start, kernel->end, kernel->graphNodeId, kernel->graphId, kernel->gridX,
                     kernel->gridY, kernel->gridZ, kernel->blockX, demangled(kernel->name)});
  }
  std::free(buffer);
  std::lock_guard<std::mutex> lock(records_mutex);
  records->insert(records->end(), batch.begin(), batch.end());
}

// Names hold commas (template arguments), so the name is the last field and quoted.
void write_csv() {
  check(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "cuptiActivityFlushAll");
  const char* path = std::getenv("DUET_TRACE_CSV");
  if (!path || !*path) path = "kernel_trace.csv";
  FILE* out = std::fopen(path, "w");
  if (!out) {
    std::fprintf(stderr, "kernel_trace: cannot write %s\n", path);
    return;
  }
  std::fprintf(out, "start_ns,end_ns,graph_id,graph_node_id,grid_x,grid_y,grid_z,block_x,name\n");
  std::lock_guard<std::mutex> lock(records_mutex);
  for (const KernelRecord& r : *records) {
    std::fprintf(out, "%llu,%llu,%u,%llu,%d,%d,%d,%d,\"%s\"\n", static_cast<unsigned long long>(r.start),
                 static_cast<unsigned long long>(r.end), r.graph_id,
                 static_cast<unsigned long long>(r.graph_node_id), r.grid_x, r.grid_y, r.grid_z, r.block_x,
                 r.name.c_str());
  }
  std::fclose(out);
  std::fprintf(stderr, "kernel_trace: %zu kernels -> %s\n", records->size(), path);
}

}  // namespace

extern "C" int InitializeInjection() {
  check(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "cuptiActivityRegisterCallbacks");
  check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "cuptiActivityEnable");
  std::atexit(write_csv);
  return 1;
}
