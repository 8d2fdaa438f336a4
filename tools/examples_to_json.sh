#!/usr/bin/env bash
# Prints lines FIRST..FIRST+N-1 of an example file as a freshet_serve /score
# body: {"examples":[{"<column>":"<value>",...},...]}, leaving out the
# columns named in SKIP (comma-separated: columns the model does not read).
# usage: tools/examples_to_json.sh FILE [N=3] [FIRST=1] [SKIP=price]
set -euo pipefail
file=$1; n=${2:-3}; first=${3:-1}; skip=${4:-price}
sed -n "$((first + 1)),$((first + n))p" "$file" |
  awk -F'\t' -v hdr="$(head -1 "$file")" -v skip=",$skip," '
    BEGIN { split(hdr, cols, "\t"); printf "{\"examples\":[" }
    { printf "%s{", (NR > 1 ? "," : ""); sep = ""
      for (i = 5; i <= NF; i++) {
        c = cols[i - 3]
        if (index(skip, "," c ",")) continue
        v = $i; gsub(/\\/, "\\\\", v); gsub(/"/, "\\\"", v)
        printf "%s\"%s\":\"%s\"", sep, c, v; sep = ","
      }
      printf "}" }
    END { printf "]}\n" }'
