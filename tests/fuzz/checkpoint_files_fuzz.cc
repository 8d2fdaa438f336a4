// Fuzz target: the text files of a checkpoint (worker/checkpoint.h) that a
// restore reads back: the MANIFEST (VerifyCheckpoint) and the workers' input
// cuts (ReadInputCut).
//
// Input byte 0 picks the mode:
//   bit 0 clear: the rest is a MANIFEST, written into a checkpoint directory
//     that also holds `dense.bin` (24 bytes with its FNV-1a trailer) and
//     `job.pbtxt`, so that listed files can exist; with bit 1 set the target
//     appends the right "checksum <hex>" line, so inputs reach the field
//     checks behind it. An accepted manifest lists only files that exist
//     with the listed size.
//   bit 0 set: the rest is an input cut; with bit 1 set its last 8 bytes are
//     replaced by the FNV-1a trailer of the rest. An accepted cut has its
//     consumed intervals inside its files, and survives WriteInputCut ->
//     ReadInputCut unchanged.
#include <sys/stat.h>

#include <cinttypes>
#include <cstdio>
#include <string>

#include "tests/fuzz/fuzz_util.h"
#include "worker/checkpoint.h"

namespace freshet {
namespace {

std::string CheckpointDirForFuzz() {
  static const std::string dir = [] {
    std::string d = fuzz::ScratchDir() + "/ckpt-1";
    mkdir(d.c_str(), 0700);
    const std::string body = "0123456789abcdef";
    const std::string dense = fuzz::WithFnvTrailer(body + "trailer!");
    fuzz::WriteFile("ckpt-1/dense.bin", dense.data(), dense.size());
    fuzz::WriteFile("ckpt-1/job.pbtxt", "task: \"synthetic\"\n", 18);
    return d;
  }();
  return dir;
}

void FuzzManifest(std::string_view rest, bool fix_checksum) {
  const std::string dir = CheckpointDirForFuzz();
  std::string text(rest);
  if (fix_checksum) {
    char line[40];
    std::snprintf(line, sizeof(line), "checksum %016" PRIx64 "\n",
                  Fnv1a64(text.data(), text.size()));
    text += line;
  }
  fuzz::WriteFile("ckpt-1/MANIFEST", text.data(), text.size());
  auto m = VerifyCheckpoint(dir);
  if (!m.ok()) return;
  for (const CheckpointFile& f : m->files) {
    struct stat st;
    FUZZ_CHECK(stat((dir + "/" + f.name).c_str(), &st) == 0);
    FUZZ_CHECK(static_cast<uint64_t>(st.st_size) == f.bytes);
  }
}

void FuzzInputCut(std::string_view rest, bool fix_trailer) {
  const std::string data = fix_trailer ? fuzz::WithFnvTrailer(rest) : std::string(rest);
  const std::string path = fuzz::WriteFile("worker-0.input", data.data(), data.size());
  auto cut = ReadInputCut(path);
  if (!cut.ok()) return;
  for (const auto& [file, set] : cut->consumed) {
    FUZZ_CHECK(file >= 0 && static_cast<size_t>(file) < cut->files.size());
    for (const ByteInterval& b : set.intervals()) {
      FUZZ_CHECK(b.begin < b.end && b.end <= cut->files[file].bytes);
    }
  }
  const std::string again_path = fuzz::ScratchDir() + "/worker-0.input.again";
  FUZZ_CHECK(WriteInputCut(again_path, *cut).ok());
  auto again = ReadInputCut(again_path);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->worker == cut->worker && again->num_workers == cut->num_workers);
  FUZZ_CHECK(again->step == cut->step && again->epoch == cut->epoch);
  FUZZ_CHECK(again->files == cut->files);
  FUZZ_CHECK(again->consumed == cut->consumed);
  std::remove(again_path.c_str());
}

}  // namespace
}  // namespace freshet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  freshet::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  if (mode % 2 == 0) {
    freshet::FuzzManifest(in.Rest(), (mode & 2) != 0);
  } else {
    freshet::FuzzInputCut(in.Rest(), (mode & 2) != 0);
  }
  return 0;
}
