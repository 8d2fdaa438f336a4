// freshet_serve: serves the newest model of an export directory over HTTP.
//
//   freshet_serve --export_dir=out/synthetic/export [--port=8080]
//                 [--explore=0] [--freeze_after_s=-1] [--min_reload_interval_s=0]
//                 [--reload_interval_after_s=0] [--model_name=NAME]
//
// Watches --export_dir (written by the exporter, exporter/export_dir.h), loads
// the newest model (full snapshot + deltas, incrementally when possible),
// swaps it in without blocking requests, and answers POST /score, POST
// /rank, GET /model, GET /metrics and the KServe v2 / Open Inference
// Protocol endpoints under /v2 (formats in serving/http_server.h; the v2
// model name is --model_name, by default the job's name from the manifest).
// Prints "freshet_serve listening on http://HOST:PORT" on stdout once bound
// (with --port=0, the port it picked). Logs every model swap (version, rows,
// load time) and every rejected export. Stops on SIGINT or SIGTERM.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/logging.h"
#include "common/malloc_huge_pages.h"
#include "serving/http_server.h"
#include "serving/model_watcher.h"

DEFINE_string(export_dir, "", "Export directory to serve from (required)");
DEFINE_string(host, "127.0.0.1", "Address to listen on (0.0.0.0: every interface)");
DEFINE_int32(port, 8080, "Port to listen on; 0 picks a free port and prints it");
DEFINE_int32(poll_ms, 100,
             "How often to check the export directory for a new model (ms); with --notify "
             "a new LATEST is also seen at once");
DEFINE_bool(notify, true,
            "Watch the export directory with inotify (load a new model as soon as "
            "LATEST changes), besides polling");
DEFINE_int64(max_body_bytes, 1 << 20, "Largest request body accepted; larger ones get 413");
DEFINE_int32(max_batch, 1000,
             "Most examples per /score, candidates per /rank and rows per v2 infer request");
DEFINE_int32(threads, 8, "Connection-handling threads (one per open connection)");
DEFINE_string(item_column, "item", "Candidate field echoed as \"item\" by /rank");
DEFINE_double(explore, 0,
              "Default exploration share of /rank in [0, 1]: each slot is, with this "
              "probability, filled by a random remaining candidate (epsilon-greedy)");
DEFINE_double(freeze_after_s, -1,
              "Stop loading new models this many seconds after the first load (< 0: never)");
DEFINE_double(min_reload_interval_s, 0,
              "Load a new model at most this often (seconds; 0: every new export)");
DEFINE_double(reload_interval_after_s, 0,
              "--min_reload_interval_s applies from this many seconds after the first load "
              "(before: every new export is loaded)");
DEFINE_string(model_name, "",
              "Model name of the KServe v2 endpoints (/v2/models/NAME/infer); empty: the "
              "served job's name from the export manifest, or \"freshet\" if it has none");

int main(int argc, char** argv) {
  // Huge pages for the heap a full model load fills (common/malloc_huge_pages.h):
  // re-executes once, before any thread or flag parsing.
  freshet::ReexecWithMallocHugePages(argv);
  gflags::SetUsageMessage(
      "serves the newest model of an export directory over HTTP/JSON\n"
      "usage: freshet_serve --export_dir=DIR [--host=127.0.0.1] [--port=8080]\n"
      "endpoints: POST /score, POST /rank, GET /model, GET /metrics,\n"
      "KServe v2: GET /v2, /v2/health/{live,ready}, /v2/models/NAME[/ready], "
      "POST /v2/models/NAME/infer");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  freshet::InitLogging(argv[0]);  // stderr unless --log_dir

  if (FLAGS_export_dir.empty()) {
    std::fprintf(stderr, "freshet_serve: --export_dir is required (see --help)\n");
    return 2;
  }
  if (FLAGS_max_body_bytes < 1) {
    std::fprintf(stderr, "freshet_serve: --max_body_bytes must be >= 1\n");
    return 2;
  }

  // Handle SIGINT/SIGTERM with sigwait on this thread: block them before any
  // thread starts so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client closing its socket must not kill us

  freshet::ModelWatcher::Options wopt;
  wopt.export_dir = FLAGS_export_dir;
  wopt.poll_ms = FLAGS_poll_ms;
  wopt.notify = FLAGS_notify;
  wopt.freeze_after_s = FLAGS_freeze_after_s;
  wopt.min_reload_interval_s = FLAGS_min_reload_interval_s;
  wopt.reload_interval_after_s = FLAGS_reload_interval_after_s;
  auto watcher = freshet::ModelWatcher::Start(wopt);
  if (!watcher.ok()) {
    std::fprintf(stderr, "freshet_serve: %s\n", watcher.status().ToString().c_str());
    return 2;
  }

  freshet::HttpServer::Options hopt;
  hopt.host = FLAGS_host;
  hopt.port = FLAGS_port;
  hopt.max_body_bytes = static_cast<size_t>(FLAGS_max_body_bytes);
  hopt.max_batch = FLAGS_max_batch;
  hopt.threads = FLAGS_threads;
  hopt.item_column = FLAGS_item_column;
  hopt.explore = FLAGS_explore;
  hopt.model_name = FLAGS_model_name;
  auto server = freshet::HttpServer::Start(hopt, watcher->get());
  if (!server.ok()) {
    std::fprintf(stderr, "freshet_serve: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("freshet_serve listening on http://%s:%d (export dir %s)\n", FLAGS_host.c_str(),
              (*server)->port(), FLAGS_export_dir.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  LOG(INFO) << "signal " << sig << ": shutting down";
  (*server)->Stop();
  return 0;
}
