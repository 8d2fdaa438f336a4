#include "worker/checkpoint.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "common/checksum.h"
#include "common/file_io.h"

namespace freshet {
namespace {

namespace fs = std::filesystem;

bool HasTrailer(const std::string& name) {
  auto ends = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return name.size() > n && name.compare(name.size() - n, n, suffix) == 0;
  };
  return ends(".rows") || ends(".bin") || ends(".input") || ends(".join");
}

// The last 8 bytes of `path` (the FNV-1a trailer of .rows and .bin files).
StatusOr<uint64_t> Trailer(const std::string& path, uint64_t bytes) {
  if (bytes < 8)
    return DataLoss(path + ": " + std::to_string(bytes) + " bytes, no checksum trailer");
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return NotFound(path + ": cannot open: " + std::strerror(errno));
  uint64_t v = 0;
  const ssize_t n = pread(fd, &v, sizeof(v), static_cast<off_t>(bytes - 8));
  close(fd);
  if (n != static_cast<ssize_t>(sizeof(v))) return DataLoss(path + ": cannot read the trailer");
  return v;
}

// MANIFEST format version 2 ends with "checksum <16 hex digits>\n", the
// FNV-1a 64 of every byte before that line; version 1 (no checksum line) is
// still read.
constexpr int kManifestVersion = 2;
constexpr char kChecksumKey[] = "checksum ";

// The ids of the ckpt-<id>/ directories under root, ascending.
std::vector<int64_t> CheckpointIds(const std::string& root) {
  std::vector<int64_t> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("ckpt-", 0) != 0) continue;
    char* end = nullptr;
    const long long id = std::strtoll(name.c_str() + 5, &end, 10);
    if (*end == '\0' && id > 0) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace

uint64_t CheckpointManifest::TotalBytes() const {
  uint64_t b = 0;
  for (const auto& f : files) b += f.bytes;
  return b;
}

std::string CheckpointDir(const std::string& root, int64_t id) {
  return root + "/ckpt-" + std::to_string(id);
}

StatusOr<int64_t> LatestCheckpointId(const std::string& root) {
  const std::string path = root + "/CHECKPOINT_LATEST";
  std::ifstream in(path);
  if (!in) return NotFound(path + ": no checkpoint published");
  std::string text;
  std::getline(in, text);
  char* end = nullptr;
  const long long id = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || id <= 0) {
    return DataLoss(path + ": line 1: expected a positive checkpoint id, got '" + text + "'");
  }
  return static_cast<int64_t>(id);
}

Status WriteManifest(const std::string& dir, CheckpointManifest* m) {
  m->files.clear();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (name == "MANIFEST" || (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0)) {
      continue;
    }
    CheckpointFile f;
    f.name = name;
    f.bytes = e.file_size();
    if (HasTrailer(name)) {
      FRESHET_ASSIGN_OR_RETURN(f.checksum, Trailer(dir + "/" + name, f.bytes));
    }
    m->files.push_back(f);
  }
  if (ec) return Internal(dir + ": cannot list: " + ec.message());
  std::sort(m->files.begin(), m->files.end(),
            [](const CheckpointFile& a, const CheckpointFile& b) { return a.name < b.name; });
  std::ostringstream out;
  out << "freshet-checkpoint " << kManifestVersion << "\n"
      << "id " << m->id << "\nstep " << m->step << "\nparent " << m->parent << "\nservers "
      << m->num_servers << "\nworkers " << m->num_workers << "\nunix_ms " << m->unix_ms << "\n";
  for (const auto& f : m->files) {
    out << "file " << f.name << " " << f.bytes << " " << std::hex << f.checksum << std::dec << "\n";
  }
  out << "end\n";
  std::string text = out.str();
  text += kChecksumKey + Hex64(Fnv1a64(text.data(), text.size())) + "\n";
  return WriteFileAtomic(dir + "/MANIFEST", text);
}

StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& dir) {
  const std::string path = dir + "/MANIFEST";
  std::ifstream file(path, std::ios::binary);
  if (!file) return NotFound(path + ": no manifest (an incomplete checkpoint)");
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) return DataLoss(path + ": read error");
  CheckpointManifest m;
  int n = 0;
  auto bad = [&](const std::string& what) {
    return DataLoss(path + ": line " + std::to_string(n) + ": " + what);
  };
  // Version 2: the last line is the checksum of everything before it.
  const size_t first_nl = text.find('\n');
  const std::string first = text.substr(0, first_nl);
  int version = 0;
  if (first == "freshet-checkpoint 1") {
    version = 1;
  } else if (first == "freshet-checkpoint 2") {
    version = 2;
  } else {
    n = 1;
    return bad("not a freshet checkpoint manifest (versions 1 and 2 are known)");
  }
  size_t body_end = text.size();
  if (version >= 2) {
    const size_t last = text.size() >= 2 ? text.rfind('\n', text.size() - 2) : std::string::npos;
    const std::string tail = last == std::string::npos ? std::string() : text.substr(last + 1);
    n = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
    const std::string want_prefix = kChecksumKey;
    if (tail.size() != want_prefix.size() + 17 ||
        tail.compare(0, want_prefix.size(), want_prefix) != 0 || tail.back() != '\n') {
      return bad("no 'checksum <16 hex digits>' trailer line (truncated or corrupt)");
    }
    body_end = last + 1;
    const std::string want = Hex64(Fnv1a64(text.data(), body_end));
    if (tail.compare(want_prefix.size(), 16, want) != 0) {
      return bad("checksum mismatch: the file says " + tail.substr(want_prefix.size(), 16) +
                 ", its content hashes to " + want + " (MANIFEST corrupt)");
    }
  }
  std::istringstream in(text.substr(0, body_end));
  std::string line;
  n = 0;
  bool ended = false;
  while (std::getline(in, line)) {
    ++n;
    if (ended) return bad("unexpected line after 'end'");
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (n == 1) continue;  // the version line, checked above
    if (key == "end") {
      ended = true;
      continue;
    }
    if (key == "file") {
      CheckpointFile f;
      if (!(ls >> f.name >> f.bytes >> std::hex >> f.checksum)) return bad("bad file entry");
      m.files.push_back(f);
      continue;
    }
    int64_t v = 0;
    if (!(ls >> v)) return bad("bad value for '" + key + "'");
    if (key == "id")
      m.id = v;
    else if (key == "step")
      m.step = v;
    else if (key == "parent")
      m.parent = v;
    else if (key == "servers")
      m.num_servers = static_cast<int>(v);
    else if (key == "workers")
      m.num_workers = static_cast<int>(v);
    else if (key == "unix_ms")
      m.unix_ms = v;
    else
      return bad("unknown field '" + key + "'");
  }
  if (!ended) return bad("truncated (no 'end' line)");
  for (const auto& f : m.files) {
    const std::string p = dir + "/" + f.name;
    struct stat st;
    if (stat(p.c_str(), &st) != 0) return DataLoss(p + ": listed in " + path + " but missing");
    if (static_cast<uint64_t>(st.st_size) != f.bytes) {
      return DataLoss(p + ": " + std::to_string(st.st_size) + " bytes, " + path + " says " +
                      std::to_string(f.bytes));
    }
    if (HasTrailer(f.name)) {
      FRESHET_ASSIGN_OR_RETURN(uint64_t sum, Trailer(p, f.bytes));
      if (sum != f.checksum) return DataLoss(p + ": checksum differs from " + path);
    }
  }
  return m;
}

Status PublishCheckpoint(const std::string& root, int64_t id, int keep) {
  FRESHET_RETURN_IF_ERROR(WriteFileAtomic(root + "/CHECKPOINT_LATEST", std::to_string(id) + "\n"));
  if (keep <= 0) return Status::OK();
  // The kept checkpoints' ancestors stay.
  std::set<int64_t> needed;
  for (int64_t k = std::max<int64_t>(1, id - keep + 1); k <= id; ++k) {
    for (int64_t a = k; a > 0 && needed.insert(a).second;) {
      auto m = VerifyCheckpoint(CheckpointDir(root, a));
      a = m.ok() ? m->parent : 0;
    }
  }
  for (int64_t old : CheckpointIds(root)) {
    if (old > id - keep || needed.count(old) > 0) continue;
    std::error_code ec;
    fs::remove_all(CheckpointDir(root, old), ec);
    if (ec) return Internal(CheckpointDir(root, old) + ": cannot delete: " + ec.message());
  }
  return Status::OK();
}

StatusOr<int64_t> NewestCompleteCheckpoint(const std::string& root) {
  const std::vector<int64_t> ids = CheckpointIds(root);
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    const std::string dir = CheckpointDir(root, *it);
    if (VerifyCheckpoint(dir).ok() && ResolveRestoreChain(dir).ok()) return *it;
  }
  return NotFound(root + ": no complete checkpoint");
}

StatusOr<int64_t> NextCheckpointId(const std::string& root) {
  int64_t next = 1;
  auto latest = LatestCheckpointId(root);
  if (latest.ok()) {
    next = *latest + 1;
  } else if (latest.status().code() != StatusCode::kNotFound) {
    return latest.status();
  }
  const std::vector<int64_t> ids = CheckpointIds(root);
  if (!ids.empty()) next = std::max(next, ids.back() + 1);
  return next;
}

StatusOr<std::string> ResolveRestoreDir(const std::string& path) {
  struct stat st;
  if (stat((path + "/CHECKPOINT_LATEST").c_str(), &st) == 0) {
    FRESHET_ASSIGN_OR_RETURN(int64_t id, LatestCheckpointId(path));
    const std::string dir = CheckpointDir(path, id);
    FRESHET_RETURN_IF_ERROR(VerifyCheckpoint(dir).status());
    return dir;
  }
  if (stat((path + "/MANIFEST").c_str(), &st) == 0) {
    FRESHET_RETURN_IF_ERROR(VerifyCheckpoint(path).status());
    return path;
  }
  if (stat((path + "/dense.bin").c_str(), &st) == 0) return path;
  return NotFound(path +
                  ": neither a checkpoint (MANIFEST, CHECKPOINT_LATEST) nor a saved model "
                  "(dense.bin)");
}

StatusOr<std::vector<std::string>> ResolveRestoreChain(const std::string& path) {
  FRESHET_ASSIGN_OR_RETURN(std::string dir, ResolveRestoreDir(path));
  std::vector<std::string> chain = {dir};
  struct stat st;
  if (stat((dir + "/MANIFEST").c_str(), &st) != 0) return chain;  // a plain model
  FRESHET_ASSIGN_OR_RETURN(CheckpointManifest m, VerifyCheckpoint(dir));
  const std::string root = fs::path(dir).parent_path().string();
  while (m.parent > 0) {
    if (m.parent >= m.id) {
      return DataLoss(chain.back() + "/MANIFEST: parent " + std::to_string(m.parent) +
                      " is not older than id " + std::to_string(m.id));
    }
    const std::string parent = CheckpointDir(root, m.parent);
    auto pm = VerifyCheckpoint(parent);
    if (!pm.ok()) {
      return DataLoss(chain.back() + " is incremental over " + parent + ": " +
                      pm.status().ToString());
    }
    chain.push_back(parent);
    m = *pm;
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

CheckpointPublisher::~CheckpointPublisher() {
  if (thread_.joinable()) thread_.join();
}

void CheckpointPublisher::Start(PendingCheckpoint p) {
  CHECK(!in_flight()) << "one checkpoint in flight at a time: call Finish() first";
  result_ = PublishedCheckpoint();
  thread_ = std::thread([this, p = std::move(p)]() mutable {
    const auto t0 = std::chrono::steady_clock::now();
    PublishedCheckpoint& r = result_;
    r.pause_ms = p.pause_ms;
    r.copied_bytes = p.copied_bytes;
    r.manifest = p.manifest;
    Status st = p.wait_written ? p.wait_written() : Status::OK();
    if (st.ok()) st = WriteManifest(p.dir, &r.manifest);
    if (st.ok()) st = PublishCheckpoint(p.root, r.manifest.id, p.keep);
    r.write_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    r.status = st.WithContext(p.dir);
    if (st.ok() && p.print) {
      std::printf(
          "checkpoint %lld (%s) at step %lld: %zu files, %.2f MB, training paused %.0f ms"
          " (servers copied %.2f MB), written in the background in %.0f ms -> %s\n",
          static_cast<long long>(r.manifest.id), r.manifest.parent > 0 ? "incremental" : "full",
          static_cast<long long>(r.manifest.step), r.manifest.files.size(),
          r.manifest.TotalBytes() / 1e6, r.pause_ms, r.copied_bytes / 1e6, r.write_ms,
          p.dir.c_str());
      std::fflush(stdout);
    }
  });
}

std::optional<PublishedCheckpoint> CheckpointPublisher::Finish() {
  if (!thread_.joinable()) return std::nullopt;
  thread_.join();
  return std::move(result_);
}

StatusOr<std::vector<InputFileId>> DescribeInputFiles(const std::vector<std::string>& files) {
  std::vector<InputFileId> out;
  for (const std::string& f : files) {
    struct stat st;
    if (stat(f.c_str(), &st) != 0) {
      return NotFound("input file " + f + ": cannot stat: " + std::strerror(errno));
    }
    out.push_back({f, static_cast<uint64_t>(st.st_size)});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const InputFileId& a, const InputFileId& b) { return a.path < b.path; });
  return out;
}

std::string InputCutFileName(int worker) { return "worker-" + std::to_string(worker) + ".input"; }

Status WriteInputCut(const std::string& path, const InputCut& cut) {
  std::ostringstream out;
  out << "freshet-input 1\nworker " << cut.worker << "\nworkers " << cut.num_workers << "\nstep "
      << cut.step << "\nepoch " << cut.epoch << "\nfiles " << cut.files.size() << "\n";
  // The path last: it may hold spaces.
  for (size_t i = 0; i < cut.files.size(); ++i) {
    out << "file " << i << " " << cut.files[i].bytes << " " << cut.files[i].path << "\n";
  }
  for (const auto& [file, set] : cut.consumed) {
    for (const ByteInterval& b : set.intervals()) {
      out << "consumed " << file << " " << b.begin << " " << b.end << "\n";
    }
  }
  out << "end\n";
  std::string text = out.str();
  const uint64_t sum = Fnv1a64(text.data(), text.size());
  text.append(reinterpret_cast<const char*>(&sum), sizeof(sum));
  return WriteFileAtomic(path, text);
}

StatusOr<InputCut> ReadInputCut(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  if (data.size() < 8) {
    return DataLoss(path + ": " + std::to_string(data.size()) + " bytes, no checksum trailer");
  }
  uint64_t stored;
  std::memcpy(&stored, data.data() + data.size() - 8, 8);
  data.resize(data.size() - 8);
  if (Fnv1a64(data.data(), data.size()) != stored) return DataLoss(path + ": checksum mismatch");
  InputCut cut;
  std::istringstream text(data);
  std::string line;
  int n = 0;
  bool ended = false;
  size_t num_files = 0;
  auto bad = [&](const std::string& what) {
    return DataLoss(path + ": line " + std::to_string(n) + ": " + what);
  };
  while (std::getline(text, line)) {
    ++n;
    if (n == 1) {
      if (line != "freshet-input 1") return bad("not a freshet input cut");
      continue;
    }
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "end") {
      ended = true;
      break;
    }
    if (key == "file") {
      size_t i;
      InputFileId f;
      if (!(ls >> i >> f.bytes) || i != cut.files.size()) return bad("bad file entry");
      ls.get();  // the space before the path
      std::getline(ls, f.path);
      if (f.path.empty()) return bad("file entry without a path");
      cut.files.push_back(f);
      continue;
    }
    if (key == "consumed") {
      int64_t file;
      uint64_t b, e;
      if (!(ls >> file >> b >> e) || b >= e) return bad("bad consumed interval");
      if (file < 0 || static_cast<size_t>(file) >= num_files) {
        return bad("consumed interval of file " + std::to_string(file) + ", the cut has " +
                   std::to_string(num_files) + " files");
      }
      if (e > (static_cast<size_t>(file) < cut.files.size() ? cut.files[file].bytes : 0)) {
        return bad("consumed interval ends past its file's size");
      }
      cut.consumed[static_cast<int>(file)].Add(b, e);
      continue;
    }
    int64_t v;
    if (!(ls >> v)) return bad("bad value for '" + key + "'");
    if (key == "worker")
      cut.worker = static_cast<int>(v);
    else if (key == "workers")
      cut.num_workers = static_cast<int>(v);
    else if (key == "step")
      cut.step = v;
    else if (key == "epoch")
      cut.epoch = static_cast<int>(v);
    else if (key == "files")
      num_files = static_cast<size_t>(v);
    else
      return bad("unknown field '" + key + "'");
  }
  if (!ended) return bad("truncated (no 'end' line)");
  if (cut.files.size() != num_files) {
    return DataLoss(path + ": lists " + std::to_string(cut.files.size()) + " files, says " +
                    std::to_string(num_files));
  }
  return cut;
}

StatusOr<InputCut> LoadInputCut(const std::string& dir, int num_workers,
                                const std::vector<InputFileId>& files) {
  InputCut all;
  all.worker = -1;
  all.num_workers = num_workers;
  all.files = files;
  for (int w = 0; w < num_workers; ++w) {
    const std::string path = dir + "/" + InputCutFileName(w);
    auto cut = ReadInputCut(path);
    if (!cut.ok() && cut.status().code() == StatusCode::kNotFound && w == 0) {
      return NotFound(dir + ": no input cut (" + InputCutFileName(0) +
                      "): a streaming job or an older checkpoint");
    }
    FRESHET_RETURN_IF_ERROR(cut.status());
    if (cut->files.size() != files.size()) {
      return FailedPrecondition(path + ": the checkpoint was taken over " +
                                std::to_string(cut->files.size()) + " input files, the job has " +
                                std::to_string(files.size()) +
                                "; restoring input positions needs the same input files");
    }
    for (size_t i = 0; i < files.size(); ++i) {
      if (cut->files[i].path != files[i].path) {
        return FailedPrecondition(path + ": input file " + std::to_string(i) + " was " +
                                  cut->files[i].path + ", the job has " + files[i].path +
                                  "; restoring input positions needs the same input files");
      }
      if (cut->files[i].bytes != files[i].bytes) {
        return FailedPrecondition(path + ": input file " + files[i].path + " had " +
                                  std::to_string(cut->files[i].bytes) + " bytes, now " +
                                  std::to_string(files[i].bytes) +
                                  "; restoring input positions needs unchanged input files");
      }
    }
    if (w == 0) {
      all.step = cut->step;
      all.epoch = cut->epoch;
    } else if (cut->step != all.step || cut->epoch != all.epoch) {
      return DataLoss(path + ": step " + std::to_string(cut->step) + " epoch " +
                      std::to_string(cut->epoch) + ", worker 0's cut says step " +
                      std::to_string(all.step) + " epoch " + std::to_string(all.epoch));
    }
    for (const auto& [file, set] : cut->consumed) all.consumed[file].AddAll(set);
  }
  return all;
}

}  // namespace freshet
