#!/usr/bin/env bash
# Static checks, a CI step (tools/test.sh runs it after the build, before
# ctest):
#   format  every tracked C++ file (*.h *.cc *.cu) is formatted as .clang-format
#           says (clang-format --dry-run --Werror); fix with
#           clang-format -i FILE.
#   tsa     every translation unit of build/compile_commands.json except the
#           .cu files and the generated protobuf code passes clang's
#           thread-safety analysis (common/thread_annotations.h): clang-check
#           runs clang -fsyntax-only with each file's own compile flags plus
#           -Wthread-safety -Werror=thread-safety (other warnings stay
#           warnings). Units whose build dependency file shows they do not
#           include common/thread_annotations.h are skipped (nothing there to
#           analyse; FRESHET_STATIC_ALL_UNITS=1 checks them too). Needs a
#           configured build/ (tools/build.sh) with its generated headers;
#           run it after the build, so the dependency files are fresh.
#   cmake   the project also configures with -DFRESHET_BUILD_TESTS=OFF (a
#           user building only the binaries): no CMakeLists.txt may touch a
#           test target unguarded (configure only, into a temporary dir).
#   codegen every object built from a source that calls PrefetchForRead
#           (common/prefetch.h) holds prefetch instructions: GCC deletes
#           calls to helpers whose only effect is a prefetch, and did so to
#           every prefetch of the embedding table until 2026-12 (the table's
#           pull and push cost up to 1.9x as much). Needs a built build/.
# All run in parallel over $(nproc) jobs. Exits non-zero, naming each failing
# file, if either fails.
#
# Usage: tools/check_static.sh [format|tsa|cmake|codegen]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
what=${1:-all}
case "$what" in
  all | format | tsa | cmake | codegen) ;;
  *)
    echo "usage: $0 [format|tsa|cmake|codegen]" >&2
    exit 2
    ;;
esac

need() {
  if ! command -v "$1" >/dev/null; then
    echo "check_static: $1 not found (tools/bootstrap.sh installs it)" >&2
    exit 1
  fi
}

failed=0

if [ "$what" = all ] || [ "$what" = format ]; then
  need clang-format
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files -- '*.h' '*.cc' '*.cu')
  else
    mapfile -t files < <(find . -path './build*' -prune -o \
                           \( -name '*.h' -o -name '*.cc' -o -name '*.cu' \) -type f -print |
                         sed 's|^\./||' | sort)
  fi
  log=$(mktemp)
  # --dry-run --Werror prints "FILE:LINE:COL: error: code should be
  # clang-formatted" for every unformatted spot and exits non-zero.
  if printf '%s\n' "${files[@]}" |
       xargs -d '\n' -P "$jobs" -n 16 clang-format --dry-run --Werror >"$log" 2>&1; then
    echo "check_static: clang-format: ${#files[@]} files formatted"
  else
    # (sed, not head: no SIGPIPE under pipefail)
    grep -E ': (error|warning):' "$log" | sed -n '1,40p' || sed -n '1,40p' "$log"
    echo "check_static: clang-format: FAILED, unformatted files:" \
         "$(grep -oE '^[^: ]+:[0-9]+:[0-9]+: (error|warning)' "$log" | cut -d: -f1 | sort -u |
            tr '\n' ' ')(fix: clang-format -i FILE)"
    failed=1
  fi
  rm -f "$log"
fi

if [ "$what" = all ] || [ "$what" = cmake ]; then
  need cmake
  dir=$(mktemp -d)
  if cmake -S . -B "$dir" -DFRESHET_BUILD_TESTS=OFF >"$dir/configure.log" 2>&1; then
    echo "check_static: cmake: configures with FRESHET_BUILD_TESTS=OFF"
  else
    grep -A4 'CMake Error' "$dir/configure.log" | sed -n '1,40p'
    echo "check_static: cmake: FAILED to configure with FRESHET_BUILD_TESTS=OFF"
    failed=1
  fi
  rm -rf "$dir"
fi

if [ "$what" = all ] || [ "$what" = codegen ]; then
  need objdump
  checked=0
  while IFS= read -r src; do
    obj=$(find build -path "*/$(basename "$(dirname "$src")")/*" -name "$(basename "$src").o" |
          sed -n 1p)
    if [ -z "$obj" ]; then
      echo "check_static: codegen: no object for $src in build/ (run tools/build.sh)" >&2
      failed=1
      continue
    fi
    checked=$((checked + 1))
    # (grep reads all of it: -q would stop early and fail the pipe)
    if ! objdump -d "$obj" | grep prefetch >/dev/null; then
      echo "check_static: codegen: FAILED: $obj ($src calls PrefetchForRead) has no prefetch instruction"
      failed=1
    fi
  done < <(git grep -l 'PrefetchForRead(' -- '*.cc' 2>/dev/null || true)
  echo "check_static: codegen: prefetches kept in $checked object(s)"
fi

if [ "$what" = all ] || [ "$what" = tsa ]; then
  need clang-check
  db=build/compile_commands.json
  if [ ! -f "$db" ]; then
    echo "check_static: $db not found: configure and build first (tools/build.sh)" >&2
    exit 1
  fi
  # CMake writes each entry as "directory", "command" (with "-o OBJECT"),
  # "file" lines: print "FILE<TAB>DEPFILE" (the compiler's OBJECT.d).
  all=0
  mapfile -t entries < <(awk '
    /^  "directory": / { d = $0; sub(/^  "directory": "/, "", d); sub(/",?$/, "", d) }
    /^  "command": / { o = ""; n = split($0, a, " "); for (i = 1; i < n; i++) if (a[i] == "-o") o = a[i + 1] }
    /^  "file": / { f = $0; sub(/^  "file": "/, "", f); sub(/",?$/, "", f)
                    print f "\t" (o == "" ? "" : d "/" o ".d") }' "$db" | sort -u)
  units=()
  for e in "${entries[@]}"; do
    src=${e%%$'\t'*}
    dep=${e#*$'\t'}
    all=$((all + 1))
    # Skip CUDA (.cu: nvcc flags) and code generated into build/.
    [[ $src == *.cu || $src == "$PWD/build/"* ]] && continue
    # A unit whose headers (the compiler's dependency file, fresh from the
    # build) do not include common/thread_annotations.h has no annotated
    # code, so the analysis cannot report anything there: skip it, unless
    # FRESHET_STATIC_ALL_UNITS=1. Units not built yet, or edited since, are
    # checked.
    if [ "${FRESHET_STATIC_ALL_UNITS:-0}" != 1 ] && [ -n "$dep" ] && [ -f "$dep" ] &&
       [ ! "$src" -nt "$dep" ] && ! grep -q 'common/thread_annotations\.h' "$dep"; then
      continue
    fi
    units+=("$src")
  done
  if [ ${#units[@]} -eq 0 ]; then
    echo "check_static: no translation units to check in $db ($all entries)" >&2
    exit 1
  fi
  log=$(mktemp)
  # clang-check prints "Error while processing FILE." for every file with an
  # error and exits non-zero.
  if printf '%s\n' "${units[@]}" |
       xargs -d '\n' -P "$jobs" -n 1 clang-check -p build --extra-arg=-Wno-error \
         --extra-arg=-Wthread-safety --extra-arg=-Werror=thread-safety >"$log" 2>&1; then
    echo "check_static: thread-safety analysis: ${#units[@]} translation units clean" \
         "(of $all in $db; the rest do not include common/thread_annotations.h, or are .cu/generated)"
  else
    grep -E 'error:|Error while processing' "$log" | sed -n '1,60p' || sed -n '1,60p' "$log"
    echo "check_static: thread-safety analysis: FAILED in" \
         "$(grep -oE 'Error while processing [^ ]+\.' "$log" | sed -E 's/^Error while processing (.*)\.$/\1/' |
            sed "s|^$PWD/||" | sort -u | tr '\n' ' ')"
    failed=1
  fi
  rm -f "$log"
fi

exit "$failed"
