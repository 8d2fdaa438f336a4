#!/usr/bin/env python3
"""Counts records trained twice and records skipped across restarted attempts.

freshet_train --input_ledger_dir=DIR makes every worker w append to
DIR/worker-<w>.ledger, one attempt after another:

  attempt <unix_ms> restored_from <ckpt-id or 0> workers <W>
  b <epoch> <file_index> <begin_byte> <end_byte> <records>   one trained batch interval
  c <ckpt-id> <step>                                         a checkpoint taken here (its cut)

The model that finally exists is the *lineage* of the last attempt: the
attempt it restored from, cut at that checkpoint's `c` line, and so on back
to an attempt that started fresh. Records of a killed attempt after the cut
that its successor restored from are lost from the model and trained again:
those are the expected duplicates. This script checks, per worker:

  - no record is in the lineage twice (a restore that re-read data already
    in the checkpoint): "overlap";
  - the lineage covers the data: with --baseline=DIR (the ledgers of an
    uninterrupted run of the same job), exactly the baseline's bytes per
    (epoch, file), for every baseline worker (one whose ledger the run lacks
    skipped all its records); without, the lineages of all workers together leave no
    gap between the first and the last byte trained of each (epoch, file):
    "skipped";
  - every restore names a checkpoint some earlier attempt recorded.

Bad lines are counted and skipped (file:line and field named), up to
--max_bad_lines, then it stops; a last line cut short (no newline: the
worker was killed while writing it) is dropped with a note.

usage: ledger_check.py LEDGER_DIR [--baseline=DIR] [--json] [--max_bad_lines=N]
Prints a table and, last, one JSON line. Exit: 0 ok, 1 check failed, 2 bad input.
"""
import glob
import json
import os
import re
import sys


class LedgerError(Exception):
    pass


class Attempt:
    def __init__(self, unix_ms, restored_from, workers, line):
        self.unix_ms = unix_ms
        self.restored_from = restored_from
        self.workers = workers
        self.line = line
        self.events = []  # ('b', epoch, file, begin, end, records) | ('c', id, step)


def parse_ledger(path, max_bad, notes):
    """Returns the attempts of one ledger file, in order."""
    with open(path, 'rb') as f:
        data = f.read().decode('utf-8', errors='replace')
    lines = data.split('\n')
    truncated = not data.endswith('\n') and data != ''
    if data.endswith('\n'):
        lines = lines[:-1]
    attempts, bad = [], 0

    def fail(n, field, text):
        nonlocal bad
        bad += 1
        notes.append('%s:%d: bad field %s in %r (skipped)' % (path, n, field, text))
        if bad > max_bad:
            raise LedgerError('%s: more than %d bad lines; last: line %d' % (path, max_bad, n))

    for n, text in enumerate(lines, 1):
        if truncated and n == len(lines):
            notes.append('%s:%d: last line cut short (%r), dropped' % (path, n, text))
            break
        w = text.split()
        if not w:
            continue
        try:
            if w[0] == 'attempt':
                if len(w) != 6 or w[2] != 'restored_from' or w[4] != 'workers':
                    fail(n, 'attempt header', text)
                    continue
                attempts.append(Attempt(int(w[1]), int(w[3]), int(w[5]), n))
            elif w[0] == 'b':
                if len(w) != 6:
                    fail(n, 'b (6 fields)', text)
                    continue
                epoch, fi, begin, end, records = (int(x) for x in w[1:])
                if end < begin or records < 0:
                    fail(n, 'begin/end/records', text)
                    continue
                if not attempts:
                    fail(n, 'b before any attempt header', text)
                    continue
                attempts[-1].events.append(('b', epoch, fi, begin, end, records))
            elif w[0] == 'c':
                if len(w) != 3:
                    fail(n, 'c (3 fields)', text)
                    continue
                if not attempts:
                    fail(n, 'c before any attempt header', text)
                    continue
                attempts[-1].events.append(('c', int(w[1]), int(w[2])))
            else:
                fail(n, 'kind %r' % w[0], text)
        except ValueError:
            fail(n, 'number', text)
    return attempts


def merge(intervals):
    """Sorted, merged [begin, end) list."""
    out = []
    for b, e in sorted(intervals):
        if out and b <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([b, e])
    return out


def overlap_records(batches):
    """Records of batches that overlap an earlier one (by bytes), per (epoch, file)."""
    by_key = {}
    for (epoch, fi, b, e, r) in batches:
        by_key.setdefault((epoch, fi), []).append((b, e, r))
    dup = 0
    for items in by_key.values():
        items.sort()
        reach = -1
        for b, e, r in items:
            if b < reach:
                dup += r
            reach = max(reach, e)
    return dup


def lineage(attempts, where):
    """The batches in the final model, and per attempt the records lost.

    Returns (batches, lost_per_attempt, problems)."""
    problems = []
    state_at = {}  # ckpt id -> list of batches in the model at that cut
    lost = []
    current = []
    for i, a in enumerate(attempts):
        if a.restored_from == 0:
            start = []
        elif a.restored_from in state_at:
            start = state_at[a.restored_from]
        else:
            problems.append('%s attempt %d (line %d) restored from checkpoint %d, which no earlier '
                            'attempt recorded' % (where, i + 1, a.line, a.restored_from))
            start = []
        current = list(start)
        mine = []  # this attempt's batches, in order, with the index of the last cut
        for ev in a.events:
            if ev[0] == 'b':
                current.append(ev[1:])
                mine.append(ev[1:])
            else:
                state_at[ev[1]] = list(current)
        lost.append(0)
        if i + 1 < len(attempts):
            nxt = attempts[i + 1].restored_from
            # What of this attempt survives into the next: up to the cut it
            # restored from, if that cut is this attempt's.
            kept = state_at.get(nxt, []) if nxt != 0 else []
            kept_set = {}
            for bt in kept:
                kept_set[bt] = kept_set.get(bt, 0) + 1
            for bt in mine:
                if kept_set.get(bt, 0) > 0:
                    kept_set[bt] -= 1
                else:
                    lost[i] += bt[4]
    return current, lost, problems


def check(ledger_dir, baseline_dir=None, max_bad=10):
    notes, problems = [], []
    paths = sorted(glob.glob(os.path.join(ledger_dir, 'worker-*.ledger')))
    if not paths:
        raise LedgerError('%s: no worker-*.ledger files' % ledger_dir)
    base = {}
    if baseline_dir:
        for p in sorted(glob.glob(os.path.join(baseline_dir, 'worker-*.ledger'))):
            atts = parse_ledger(p, max_bad, notes)
            if len(atts) != 1:
                raise LedgerError('%s: a baseline has exactly one attempt, found %d' % (p, len(atts)))
            base[os.path.basename(p)] = atts[0]
        if not base:
            raise LedgerError('%s: no baseline worker-*.ledger files' % baseline_dir)
    workers = []
    union = {}  # (epoch, file) -> intervals over all workers' lineages
    totals = dict(records_trained=0, records_in_model=0, duplicated=0, skipped=0,
                  skipped_bytes=0, overlap=0, attempts=0)
    for p in paths:
        name = os.path.basename(p)
        m = re.match(r'worker-(\d+)\.ledger$', name)
        if not m:
            continue
        atts = parse_ledger(p, max_bad, notes)
        if not atts:
            problems.append('%s: no attempt header' % p)
            continue
        ws = {a.workers for a in atts}
        if len(ws) != 1:
            problems.append('%s: the number of workers changed between attempts (%s): not '
                            'supported' % (p, sorted(ws)))
        final, lost, probs = lineage(atts, p)
        problems.extend(probs)
        raw = sum(ev[5] for a in atts for ev in a.events if ev[0] == 'b')
        in_model = sum(bt[4] for bt in final)
        overlap = overlap_records(final)
        skipped = skipped_bytes = 0
        if baseline_dir:
            b = base.get(name)
            if b is None:
                problems.append('%s: no baseline ledger %s' % (p, name))
            else:
                want = [ev[1:] for ev in b.events if ev[0] == 'b']
                want_records = sum(bt[4] for bt in want)
                keys = {(bt[0], bt[1]) for bt in want} | {(bt[0], bt[1]) for bt in final}
                for k in keys:
                    have = merge([(bt[2], bt[3]) for bt in final if (bt[0], bt[1]) == k])
                    need = merge([(bt[2], bt[3]) for bt in want if (bt[0], bt[1]) == k])
                    skipped_bytes += uncovered(need, have)
                skipped = max(0, want_records - (in_model - overlap))
        for bt in final:
            union.setdefault((bt[0], bt[1]), []).append((bt[2], bt[3]))
        workers.append(dict(worker=int(m.group(1)), attempts=len(atts),
                            restored_from=[a.restored_from for a in atts],
                            records_trained=raw, records_in_model=in_model,
                            duplicated=raw - in_model, lost_per_attempt=lost,
                            overlap=overlap, skipped=skipped, skipped_bytes=skipped_bytes))
        totals['records_trained'] += raw
        totals['records_in_model'] += in_model
        totals['duplicated'] += raw - in_model
        totals['overlap'] += overlap
        totals['skipped'] += skipped
        totals['skipped_bytes'] += skipped_bytes
        totals['attempts'] = max(totals['attempts'], len(atts))
    if baseline_dir:
        # A baseline worker with no ledger in the run trained nothing there:
        # all of its baseline records are missing from the final model.
        seen = {os.path.basename(p) for p in paths}
        for name in sorted(set(base) - seen):
            b = base[name]
            want = [ev[1:] for ev in b.events if ev[0] == 'b']
            records = sum(bt[4] for bt in want)
            nbytes = sum(bt[3] - bt[2] for bt in want)
            totals['skipped'] += records
            totals['skipped_bytes'] += nbytes
            problems.append('%s: the baseline has %s (%d records) but the run left no such '
                            'ledger' % (ledger_dir, name, records))
    if not baseline_dir:
        # Together the workers' lineages tile each (epoch, file) without gaps.
        for k, iv in union.items():
            merged = merge(iv)
            for (b0, e0), (b1, e1) in zip(merged, merged[1:]):
                totals['skipped_bytes'] += b1 - e0
                problems.append('epoch %d file %d: bytes [%d, %d) trained by no worker' %
                                (k[0], k[1], e0, b1))
    if totals['overlap'] > 0:
        problems.append('%d records are in the final model twice (a restore re-trained data its '
                        'checkpoint already held)' % totals['overlap'])
    if totals['skipped'] > 0 or totals['skipped_bytes'] > 0:
        problems.append('%d records (%d bytes) skipped: never in the final model' %
                        (totals['skipped'], totals['skipped_bytes']))
    return dict(ok=not problems, problems=problems, notes=notes, workers=workers, **totals)


def uncovered(need, have):
    """Bytes of merged intervals `need` not covered by merged intervals `have`."""
    missing, j = 0, 0
    for b, e in need:
        pos = b
        while j < len(have) and have[j][1] <= pos:
            j += 1
        k = j
        while pos < e:
            if k >= len(have) or have[k][0] >= e:
                missing += e - pos
                break
            if have[k][0] > pos:
                missing += have[k][0] - pos
            pos = max(pos, have[k][1])
            k += 1
    return missing


def main(argv):
    args = [a for a in argv[1:] if not a.startswith('--')]
    opts = dict(a[2:].split('=', 1) if '=' in a else (a[2:], '1') for a in argv[1:]
                if a.startswith('--'))
    if len(args) != 1:
        print(__doc__.strip().split('\n\n')[-1], file=sys.stderr)
        return 2
    try:
        r = check(args[0], opts.get('baseline'), int(opts.get('max_bad_lines', 10)))
    except (LedgerError, OSError) as e:
        print('ledger_check: %s' % e, file=sys.stderr)
        return 2
    for n in r['notes']:
        print('note: %s' % n)
    print('%-7s %8s %14s %14s %10s %8s %8s' % ('worker', 'attempts', 'trained', 'in_model',
                                              'duplicated', 'skipped', 'overlap'))
    for w in r['workers']:
        print('%-7d %8d %14d %14d %10d %8d %8d' % (w['worker'], w['attempts'], w['records_trained'],
                                                  w['records_in_model'], w['duplicated'],
                                                  w['skipped'], w['overlap']))
    for p in r['problems']:
        print('FAIL: %s' % p)
    print(json.dumps({k: r[k] for k in ('ok', 'attempts', 'records_trained', 'records_in_model',
                                        'duplicated', 'skipped', 'skipped_bytes', 'overlap')}))
    return 0 if r['ok'] else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
