// Fuzz target: a streaming worker's saved read position
// (work_dir/stream-positions/ and a checkpoint's worker-<w>.position), the
// text TailPosition::Parse reads back on restart (worker/stream/tail_source.h).
//
// The whole input is the file's text. A position Parse accepts must survive
// Serialize -> Parse unchanged (every file's name, identity, offset and line
// count), and its counts are never negative.
#include <string>

#include "tests/fuzz/fuzz_util.h"
#include "worker/stream/tail_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using freshet::TailPosition;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto pos = TailPosition::Parse(text);
  if (!pos.ok()) return 0;
  for (const auto& f : pos->files) FUZZ_CHECK(f.lines >= 0);
  auto again = TailPosition::Parse(pos->Serialize());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->files.size() == pos->files.size());
  for (size_t i = 0; i < pos->files.size(); ++i) {
    const auto &a = pos->files[i], &b = again->files[i];
    FUZZ_CHECK(a.name == b.name && a.dev == b.dev && a.inode == b.inode);
    FUZZ_CHECK(a.offset == b.offset && a.lines == b.lines);
  }
  return 0;
}
