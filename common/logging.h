// How every freshet binary starts glog.
//
// glog on its own writes INFO/WARNING/ERROR files
// (<program>.<host>.<user>.log.<severity>.<time>.<pid>) into $TMPDIR or
// /tmp, which piles up hundreds of files over test runs. freshet binaries
// log to stderr instead, unless a log directory is asked for with
// --log_dir=DIR (or GLOG_log_dir=DIR), or GLOG_logtostderr is set
// explicitly in the environment.
//
// Thread safety: call once, from main(), before starting threads.
#pragma once

namespace freshet {

// REQUIRES: gflags already parsed (--log_dir is one of glog's flags).
void InitLogging(const char* argv0);

}  // namespace freshet
