#include "common/file_io.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/checksum.h"
#include "common/metrics_registry.h"

namespace freshet {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class FileIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/file_io_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    FileWriteRetryPolicy p;
    p.attempts = 3;
    p.first_backoff = std::chrono::milliseconds(1);
    p.max_backoff = std::chrono::milliseconds(4);
    SetFileWriteRetryPolicy(p);
    FileFaultInjector::Global().Clear();
  }
  void TearDown() override {
    FileFaultInjector::Global().Clear();
    fs::remove_all(dir_);
  }
  bool TmpLeft() const {
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.path().extension() == ".tmp") return true;
    }
    return false;
  }
  std::string dir_;
};

TEST_F(FileIoTest, WritesAtomicallyAndReportsSizeAndHash) {
  const std::string path = dir_ + "/a.bin";
  const std::string content(10 << 20, 'x');  // larger than the 4 MiB buffer
  uint64_t bytes = 0, hash = 0;
  ASSERT_TRUE(WriteFileAtomicWith(
                  path,
                  [&](AtomicFileWriter* w) {
                    w->Append("head", 4);
                    w->Append(content);
                    return Status::OK();
                  },
                  &bytes, &hash)
                  .ok());
  EXPECT_EQ(bytes, content.size() + 4);
  const std::string got = ReadAll(path);
  EXPECT_EQ(got, "head" + content);
  EXPECT_EQ(hash, Fnv1a64(got.data(), got.size()));
  EXPECT_FALSE(TmpLeft());
}

// XXH64 (common/checksum.h): the reference vectors of the xxHash
// specification (seed 0), a streamed input equal to the one-shot hash for
// every split, and an AtomicFileWriter that keeps XXH64.
TEST(ChecksumTest, Xxh64MatchesTheReferenceVectors) {
  EXPECT_EQ(Xxh64Of("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(Xxh64Of("a", 1), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(Xxh64Of("abc", 3), 0x44BC2CF5AD770999ull);
  const std::string text = "Nobody inspects the spammish repetition";  // > 32 bytes: stripes
  EXPECT_EQ(Xxh64Of(text.data(), text.size()), 0xFBCEA83C8A378BF1ull);
  std::string data(300, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + 7);
  const uint64_t whole = Xxh64Of(data.data(), data.size());
  for (size_t a = 0; a <= data.size(); a += 13) {
    for (size_t b = a; b <= data.size(); b += 29) {
      Xxh64 h;
      h.Update(data.data(), a);
      h.Update(data.data() + a, b - a);
      const uint64_t mid = h.digest();  // digest() does not end the stream
      EXPECT_EQ(mid, Xxh64Of(data.data(), b));
      h.Update(data.data() + b, data.size() - b);
      ASSERT_EQ(h.digest(), whole) << a << " " << b;
    }
  }
}

TEST_F(FileIoTest, WriterKeepsXxh64WhenAsked) {
  const std::string path = dir_ + "/x.bin";
  const std::string content(5 << 20, 'y');
  uint64_t bytes = 0, hash = 0;
  ASSERT_TRUE(WriteFileAtomicWith(
                  path,
                  [&](AtomicFileWriter* w) {
                    w->Append("ab", 2);
                    w->Append(content);
                    return Status::OK();
                  },
                  &bytes, &hash, FileHash::kXxh64)
                  .ok());
  const std::string got = ReadAll(path);
  EXPECT_EQ(hash, Xxh64Of(got.data(), got.size()));
  EXPECT_NE(hash, Fnv1a64(got.data(), got.size()));
}

TEST_F(FileIoTest, UnsyncedCommitIsVisibleAndSyncFileMakesItDurable) {
  const std::string path = dir_ + "/delta.snap";
  int64_t before = GetFileWriteCounters().fsyncs;
  ASSERT_TRUE(WriteFileAtomic(path, "visible", FileSync::kNone).ok());
  EXPECT_EQ(GetFileWriteCounters().fsyncs - before, 0);  // neither file nor directory
  EXPECT_EQ(ReadAll(path), "visible");                   // renamed into place
  EXPECT_FALSE(TmpLeft());
  before = GetFileWriteCounters().fsyncs;
  ASSERT_TRUE(SyncFile(path).ok());
  EXPECT_EQ(GetFileWriteCounters().fsyncs - before, 1);
  // Gone (retention deleted it): NotFound, naming it.
  Status gone = SyncFile(dir_ + "/missing.snap");
  EXPECT_EQ(gone.code(), StatusCode::kNotFound) << gone;
  EXPECT_NE(gone.message().find("missing.snap"), std::string::npos) << gone;
  // A failed fsync: Internal, naming the file and the errno.
  FileFaultInjector::Global().Set("delta.snap", EIO, 1, FileOp::kFsync);
  Status failed = SyncFile(path);
  EXPECT_EQ(failed.code(), StatusCode::kInternal) << failed;
  EXPECT_NE(failed.message().find("delta.snap: fsync failed"), std::string::npos) << failed;
  EXPECT_NE(failed.message().find("EIO"), std::string::npos) << failed;
}

TEST_F(FileIoTest, DeferredDirectorySyncSkipsOnlyTheDirectoryFsync) {
  const std::string path = dir_ + "/delta.snap";
  int64_t before = GetFileWriteCounters().fsyncs;
  ASSERT_TRUE(WriteFileAtomic(path, "now").ok());
  EXPECT_EQ(GetFileWriteCounters().fsyncs - before, 2);  // the file and the directory
  EXPECT_EQ(ReadAll(path), "now");
  before = GetFileWriteCounters().fsyncs;
  ASSERT_TRUE(WriteFileAtomic(path, "deferred", FileSync::kFile).ok());
  EXPECT_EQ(GetFileWriteCounters().fsyncs - before, 1);  // the file only
  EXPECT_EQ(ReadAll(path), "deferred");                  // renamed all the same
  EXPECT_FALSE(TmpLeft());
  before = GetFileWriteCounters().fsyncs;
  const int64_t ns = ThisThreadFsyncNanos();
  ASSERT_TRUE(SyncDirectory(dir_).ok());
  EXPECT_EQ(GetFileWriteCounters().fsyncs - before, 1);
  EXPECT_GT(ThisThreadFsyncNanos(), ns);  // timed, for this thread
  int64_t other = -1;
  std::thread([&other] { other = ThisThreadFsyncNanos(); }).join();
  EXPECT_EQ(other, 0);  // another thread's own count
}

TEST_F(FileIoTest, LargeFilesAreWrittenBackAsTheyGo) {
  // 2.5 chunks in small appends and one large one: the first two chunks
  // are sent to disk before Commit, and the file is whole.
  const std::string path = dir_ + "/full.snap";
  const uint64_t chunk = AtomicFileWriter::kWritebackBytes;
  std::string big(chunk + chunk / 2, 'b');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  const int64_t before = GetFileWriteCounters().writeback_chunks;
  ASSERT_TRUE(WriteFileAtomicWith(path, [&](AtomicFileWriter* w) {
                for (uint64_t i = 0; i < chunk; i += 1000) {
                  w->Append(std::string(static_cast<size_t>(std::min<uint64_t>(1000, chunk - i)),
                                        static_cast<char>('a' + i % 7)));
                }
                w->Append(big);
                return Status::OK();
              }).ok());
#ifdef __linux__
  EXPECT_GE(GetFileWriteCounters().writeback_chunks - before, 2);
#endif
  const std::string got = ReadAll(path);
  ASSERT_EQ(got.size(), chunk + big.size());
  EXPECT_EQ(got.substr(chunk), big);
  EXPECT_EQ(got[1000], static_cast<char>('a' + 1000 % 7));
  EXPECT_FALSE(TmpLeft());
}

TEST_F(FileIoTest, PersistentDiskFullNamesPathAndErrnoAndKeepsOldFile) {
  const std::string path = dir_ + "/model.rows";
  ASSERT_TRUE(WriteFileAtomic(path, "good old content").ok());
  const FileWriteCounters before = GetFileWriteCounters();
  FileFaultInjector::Global().Set("model.rows", ENOSPC, -1, FileOp::kWrite);
  Status st = WriteFileAtomic(path, "new content that never lands");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInternal);
  EXPECT_NE(st.message().find(path + ".tmp: write failed"), std::string::npos) << st;
  EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st;
  EXPECT_NE(st.message().find("ENOSPC"), std::string::npos) << st;
  EXPECT_NE(st.message().find("attempt 3 of 3"), std::string::npos) << st;
  EXPECT_EQ(ReadAll(path), "good old content");
  EXPECT_FALSE(TmpLeft());
  const FileWriteCounters after = GetFileWriteCounters();
  EXPECT_EQ(after.failures - before.failures, 1);
  EXPECT_EQ(after.retries - before.retries, 2);
}

TEST_F(FileIoTest, TransientFaultsAreRetriedAndCounted) {
  const std::string path = dir_ + "/MANIFEST";
  const FileWriteCounters before = GetFileWriteCounters();
  const int64_t injected = FileFaultInjector::Global().injected();
  FileFaultInjector::Global().Set("MANIFEST", EIO, 2, FileOp::kFsync);
  ASSERT_TRUE(WriteFileAtomic(path, "v2").ok());
  EXPECT_EQ(ReadAll(path), "v2");
  EXPECT_EQ(FileFaultInjector::Global().injected() - injected, 2);
  const FileWriteCounters after = GetFileWriteCounters();
  EXPECT_EQ(after.retries - before.retries, 2);
  EXPECT_EQ(after.failures - before.failures, 0);
  EXPECT_EQ(after.files_written - before.files_written, 1);
  EXPECT_FALSE(TmpLeft());
}

TEST_F(FileIoTest, EveryFailingCallLeavesTheOldFile) {
  const std::string path = dir_ + "/LATEST";
  for (FileOp op : {FileOp::kOpen, FileOp::kWrite, FileOp::kFsync, FileOp::kRename}) {
    ASSERT_TRUE(WriteFileAtomic(path, "old\n").ok());
    FileFaultInjector::Global().Set("LATEST", EACCES, -1, op);
    Status st = WriteFileAtomic(path, "new\n");
    FileFaultInjector::Global().Clear();
    ASSERT_FALSE(st.ok()) << static_cast<int>(op);
    EXPECT_NE(st.message().find("Permission denied (EACCES)"), std::string::npos) << st;
    EXPECT_NE(st.message().find(path), std::string::npos) << st;
    EXPECT_EQ(ReadAll(path), "old\n") << static_cast<int>(op);
    EXPECT_FALSE(TmpLeft()) << static_cast<int>(op);
  }
}

TEST_F(FileIoTest, ShortWritesAreContinued) {
  const std::string path = dir_ + "/short.bin";
  std::string content;
  for (int i = 0; i < 100000; ++i) content += static_cast<char>(i * 7);
  FileFaultInjector::Global().Set("short.bin", EIO, 5, FileOp::kShortWrite);
  const FileWriteCounters before = GetFileWriteCounters();
  ASSERT_TRUE(WriteFileAtomic(path, content).ok());
  EXPECT_EQ(ReadAll(path), content);
  EXPECT_EQ(GetFileWriteCounters().retries, before.retries);  // not an error
}

TEST_F(FileIoTest, FillErrorsAreNotRetried) {
  int calls = 0;
  Status st = WriteFileAtomicWith(dir_ + "/x", [&](AtomicFileWriter*) {
    ++calls;
    return InvalidArgument("bad table");
  });
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(fs::exists(dir_ + "/x"));
  EXPECT_FALSE(TmpLeft());
}

TEST_F(FileIoTest, AbandonedWriterRemovesItsTemporary) {
  {
    auto w = AtomicFileWriter::Create(dir_ + "/abandoned");
    ASSERT_TRUE(w.ok());
    (*w)->Append("partial", 7);
    EXPECT_TRUE(TmpLeft());
  }
  EXPECT_FALSE(TmpLeft());
  EXPECT_FALSE(fs::exists(dir_ + "/abandoned"));
}

TEST_F(FileIoTest, ParsesFaultSpecs) {
  FileFaultInjector& f = FileFaultInjector::Global();
  EXPECT_TRUE(f.SetFromSpec("ckpt-2:ENOSPC:3").ok());
  EXPECT_TRUE(f.SetFromSpec("delta-:EROFS:-1:rename").ok());
  EXPECT_TRUE(f.SetFromSpec("x:EDQUOT:1:short").ok());
  for (const char* bad : {"", "x", "x:ENOSPC", ":ENOSPC:1", "x:ENOPE:1", "x:ENOSPC:0",
                          "x:ENOSPC:two", "x:ENOSPC:1:seek", "x:ENOSPC:1:write:9"}) {
    Status st = f.SetFromSpec(bad);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("write fault spec"), std::string::npos) << st;
  }
  // The default op follows the errno: ENOSPC fails write(2), EACCES open(2).
  ASSERT_TRUE(f.SetFromSpec("spec.bin:ENOSPC:1").ok());
  EXPECT_EQ(f.Check(dir_ + "/spec.bin.tmp", FileOp::kOpen), 0);
  EXPECT_EQ(f.Check(dir_ + "/other.tmp", FileOp::kWrite), 0);
  EXPECT_EQ(f.Check(dir_ + "/spec.bin.tmp", FileOp::kWrite), ENOSPC);
  EXPECT_EQ(f.Check(dir_ + "/spec.bin.tmp", FileOp::kWrite), 0);  // count used up
  ASSERT_TRUE(f.SetFromSpec("spec.bin:EACCES:2").ok());
  EXPECT_EQ(f.Check(dir_ + "/spec.bin.tmp", FileOp::kOpen), EACCES);
  EXPECT_EQ(ErrnoFromName("EROFS"), EROFS);
  EXPECT_EQ(ErrnoName(EDQUOT), "EDQUOT");
}

TEST_F(FileIoTest, MetricsExposeTheCounters) {
  MetricsRegistry reg;
  RegisterFileWriteMetrics(&reg);
  FileFaultInjector::Global().Set("m.bin", ENOSPC, -1, FileOp::kWrite);
  ASSERT_FALSE(WriteFileAtomic(dir_ + "/m.bin", "x").ok());
  const std::string text = reg.RenderPrometheus();
  const std::string want =
      "freshet_file_write_failures_total " + std::to_string(GetFileWriteCounters().failures);
  EXPECT_NE(text.find(want), std::string::npos) << text;
  EXPECT_NE(text.find("freshet_file_write_retries_total"), std::string::npos);
}

// A real full disk: a 1 MiB tmpfs. Needs mount(2) (root, not in every
// container): skipped where it is not allowed.
TEST_F(FileIoTest, RealTinyTmpfsFillsUp) {
  const std::string mnt = dir_ + "/tiny";
  ASSERT_TRUE(fs::create_directory(mnt));
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  }
  const std::string path = mnt + "/big.rows";
  Status ok = WriteFileAtomic(path, std::string(256 << 10, 'a'));
  Status full = WriteFileAtomic(path, std::string(2 << 20, 'b'));  // more than the device
  const std::string kept = ReadAll(path);
  bool tmp_left = false;
  for (const auto& e : fs::directory_iterator(mnt)) tmp_left |= e.path().extension() == ".tmp";
  ::umount(mnt.c_str());
  ASSERT_TRUE(ok.ok()) << ok;
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.message().find("ENOSPC"), std::string::npos) << full;
  EXPECT_NE(full.message().find(path), std::string::npos) << full;
  EXPECT_EQ(kept, std::string(256 << 10, 'a'));
  EXPECT_FALSE(tmp_left);
}

// ---- reading ------------------------------------------------------------------

TEST_F(FileIoTest, SequentialReaderReadsInPiecesAndReportsEnd) {
  const std::string path = dir_ + "/data";
  std::string content;
  for (int i = 0; i < 100000; ++i) content += static_cast<char>('a' + i % 26);
  ASSERT_TRUE(WriteFileAtomic(path, content).ok());
  auto r = SequentialFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->size(), content.size());
  std::string got;
  char buf[7000];
  for (;;) {
    auto n = (*r)->Read(buf, sizeof(buf));
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
    // Fewer than asked only at the end of the file.
    if (*n < sizeof(buf)) {
      EXPECT_EQ(got.size() + *n, content.size());
    }
    got.append(buf, *n);
  }
  EXPECT_EQ(got, content);
}

TEST_F(FileIoTest, ReadErrorsNameTheFileAndErrno) {
  auto missing = SequentialFileReader::Open(dir_ + "/missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), dir_ + "/missing: not found");
  // A directory opens but cannot be read(2): EISDIR, named like the writers.
  auto d = SequentialFileReader::Open(dir_);
  ASSERT_TRUE(d.ok()) << d.status();
  char c;
  auto n = (*d)->Read(&c, 1);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), StatusCode::kInternal);
  EXPECT_NE(n.status().message().find(dir_ + ": read failed: "), std::string::npos) << n.status();
  EXPECT_NE(n.status().message().find("(EISDIR)"), std::string::npos) << n.status();
}

TEST_F(FileIoTest, ReadFileToStringIsBounded) {
  const std::string path = dir_ + "/small";
  ASSERT_TRUE(WriteFileAtomic(path, std::string(100, 'x')).ok());
  auto ok = ReadFileToString(path, 100);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, std::string(100, 'x'));
  auto big = ReadFileToString(path, 99);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(big.status().message(), path + ": larger than 99 bytes");
  EXPECT_EQ(ReadFileToString(dir_ + "/none", 10).status().code(), StatusCode::kNotFound);
}

TEST_F(FileIoTest, ListDirectoryNamesEveryEntry) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/a", "1").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/b", "2").ok());
  fs::create_directory(dir_ + "/sub");
  auto names = ListDirectory(dir_);
  ASSERT_TRUE(names.ok()) << names.status();
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "sub"}));
  auto missing = ListDirectory(dir_ + "/none");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInternal);
  EXPECT_NE(missing.status().message().find(dir_ + "/none: opendir failed"), std::string::npos)
      << missing.status();
  EXPECT_NE(missing.status().message().find("(ENOENT)"), std::string::npos) << missing.status();
}

}  // namespace
}  // namespace freshet
