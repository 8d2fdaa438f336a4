#!/usr/bin/env python3
"""ledger_check.py on hand-made ledgers (ctest ledger_check)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ledger_check  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ledger_check.py')


def batches(epoch, fi, start, n, size=100, records=10):
    """n consecutive 'b' lines of `size` bytes from byte `start`."""
    return ['b %d %d %d %d %d' % (epoch, fi, start + i * size, start + (i + 1) * size, records)
            for i in range(n)]


class LedgerCheckTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, worker, lines, sub='run', newline=True):
        d = os.path.join(self.dir, sub)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, 'worker-%d.ledger' % worker), 'w') as f:
            f.write('\n'.join(lines) + ('\n' if newline else ''))
        return d

    def test_uninterrupted_run_is_clean(self):
        d = self.write(0, ['attempt 1000 restored_from 0 workers 1'] + batches(0, 0, 0, 5) +
                       ['c 1 5'])
        r = ledger_check.check(d)
        self.assertTrue(r['ok'], r['problems'])
        self.assertEqual(r['records_trained'], 50)
        self.assertEqual(r['records_in_model'], 50)
        self.assertEqual(r['duplicated'], 0)
        self.assertEqual(r['skipped_bytes'], 0)

    def test_restore_at_the_cut_duplicates_only_records_after_it(self):
        # Attempt 1: 4 batches, checkpoint 1 after 2, killed after 4.
        # Attempt 2: restores checkpoint 1, trains batches 3..6.
        lines = (['attempt 1000 restored_from 0 workers 1'] + batches(0, 0, 0, 2) + ['c 1 2'] +
                 batches(0, 0, 200, 2) +
                 ['attempt 2000 restored_from 1 workers 1'] + batches(0, 0, 200, 4))
        d = self.write(0, lines)
        base = self.write(0, ['attempt 1 restored_from 0 workers 1'] + batches(0, 0, 0, 6),
                          sub='base')
        r = ledger_check.check(d, base)
        self.assertTrue(r['ok'], r['problems'])
        self.assertEqual(r['records_trained'], 80)
        self.assertEqual(r['records_in_model'], 60)
        self.assertEqual(r['duplicated'], 20)  # the 2 batches after the cut
        self.assertEqual(r['workers'][0]['lost_per_attempt'], [20, 0])
        self.assertEqual(r['skipped'], 0)
        self.assertEqual(r['overlap'], 0)

    def test_resume_past_the_cut_skips_records(self):
        # Attempt 2 restores checkpoint 1 (cut at byte 200) but resumes at 400.
        lines = (['attempt 1000 restored_from 0 workers 1'] + batches(0, 0, 0, 2) + ['c 1 2'] +
                 batches(0, 0, 200, 2) +
                 ['attempt 2000 restored_from 1 workers 1'] + batches(0, 0, 400, 2))
        d = self.write(0, lines)
        base = self.write(0, ['attempt 1 restored_from 0 workers 1'] + batches(0, 0, 0, 6),
                          sub='base')
        r = ledger_check.check(d, base)
        self.assertFalse(r['ok'])
        self.assertEqual(r['skipped'], 20)
        self.assertEqual(r['skipped_bytes'], 200)
        # Without a baseline the gap is still found (bytes [200, 400)).
        r = ledger_check.check(d)
        self.assertFalse(r['ok'])
        self.assertEqual(r['skipped_bytes'], 200)
        self.assertTrue(any('[200, 400)' in p for p in r['problems']), r['problems'])

    def test_baseline_worker_missing_from_the_run_is_skipped_data(self):
        # The run's worker 0 is clean, but worker 1 (in the baseline) never
        # wrote a ledger: its records are missing from the model.
        d = self.write(0, ['attempt 1000 restored_from 0 workers 2'] + batches(0, 0, 0, 3))
        self.write(0, ['attempt 1 restored_from 0 workers 2'] + batches(0, 0, 0, 3), sub='base')
        base = self.write(1, ['attempt 1 restored_from 0 workers 2'] + batches(0, 1, 0, 4),
                          sub='base')
        r = ledger_check.check(d, base)
        self.assertFalse(r['ok'])
        self.assertEqual(r['skipped'], 40)
        self.assertEqual(r['skipped_bytes'], 400)
        self.assertTrue(any('worker-1.ledger' in p for p in r['problems']), r['problems'])

    def test_restore_that_retrains_from_the_start_is_an_overlap(self):
        lines = (['attempt 1000 restored_from 0 workers 1'] + batches(0, 0, 0, 2) + ['c 1 2'] +
                 ['attempt 2000 restored_from 1 workers 1'] + batches(0, 0, 0, 4))
        r = ledger_check.check(self.write(0, lines))
        self.assertFalse(r['ok'])
        self.assertEqual(r['overlap'], 20)
        self.assertTrue(any('twice' in p for p in r['problems']), r['problems'])

    def test_two_workers_chain_of_restores(self):
        # Worker 0 owns bytes [0, 300) and [600, 900) of file 0, worker 1
        # [300, 600). Three attempts; the third restores checkpoint 2, taken
        # in the second, which restored checkpoint 1.
        w0 = (['attempt 1 restored_from 0 workers 2'] + batches(0, 0, 0, 1) + ['c 1 1'] +
              batches(0, 0, 100, 1) +
              ['attempt 2 restored_from 1 workers 2'] + batches(0, 0, 100, 2) + ['c 2 3'] +
              batches(0, 0, 600, 1) +
              ['attempt 3 restored_from 2 workers 2'] + batches(0, 0, 600, 3))
        w1 = (['attempt 1 restored_from 0 workers 2'] + batches(0, 0, 300, 1) + ['c 1 1'] +
              ['attempt 2 restored_from 1 workers 2'] + batches(0, 0, 400, 1) + ['c 2 3'] +
              batches(0, 0, 500, 1) +
              ['attempt 3 restored_from 2 workers 2'] + batches(0, 0, 500, 1))
        d = self.write(0, w0)
        self.write(1, w1)
        r = ledger_check.check(d)
        self.assertTrue(r['ok'], r['problems'])
        self.assertEqual(r['attempts'], 3)
        self.assertEqual(r['records_in_model'], 90)   # 900 bytes, 10 records per 100
        self.assertEqual(r['duplicated'], 30)         # w0: [100,200) and [600,700); w1: [500,600)
        by = {w['worker']: w for w in r['workers']}
        self.assertEqual(by[0]['lost_per_attempt'], [10, 10, 0])
        self.assertEqual(by[1]['lost_per_attempt'], [0, 10, 0])

    def test_unknown_checkpoint_and_changed_workers_are_problems(self):
        lines = (['attempt 1 restored_from 0 workers 1'] + batches(0, 0, 0, 1) +
                 ['attempt 2 restored_from 7 workers 2'] + batches(0, 0, 100, 1))
        r = ledger_check.check(self.write(0, lines))
        self.assertFalse(r['ok'])
        self.assertTrue(any('checkpoint 7' in p for p in r['problems']), r['problems'])
        self.assertTrue(any('workers changed' in p for p in r['problems']), r['problems'])

    def test_bad_and_cut_lines(self):
        lines = (['attempt 1 restored_from 0 workers 1'] + batches(0, 0, 0, 2) +
                 ['b 0 0 200 x 10', 'z 1 2'] + batches(0, 0, 200, 1) + ['b 0 0 30'])
        d = self.write(0, lines, newline=False)  # the last line was being written
        r = ledger_check.check(d)
        notes = '\n'.join(r['notes'])
        self.assertIn('worker-0.ledger:4: bad field number', notes)
        self.assertIn("worker-0.ledger:5: bad field kind 'z'", notes)
        self.assertIn('worker-0.ledger:7: last line cut short', notes)
        self.assertEqual(r['records_trained'], 30)
        # Past the limit it stops loudly.
        with self.assertRaises(ledger_check.LedgerError) as e:
            ledger_check.check(d, max_bad=1)
        self.assertIn('more than 1 bad lines', str(e.exception))

    def test_command_line_prints_json_last_and_exit_status(self):
        lines = (['attempt 1 restored_from 0 workers 1'] + batches(0, 0, 0, 2) + ['c 1 2'] +
                 ['attempt 2 restored_from 1 workers 1'] + batches(0, 0, 100, 2))
        d = self.write(0, lines)
        p = subprocess.run([sys.executable, SCRIPT, d], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)  # overlap at [100, 200)
        last = json.loads(p.stdout.strip().split('\n')[-1])
        self.assertFalse(last['ok'])
        self.assertEqual(last['overlap'], 10)
        p = subprocess.run([sys.executable, SCRIPT, os.path.join(self.dir, 'none')],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn('no worker-*.ledger files', p.stderr)


if __name__ == '__main__':
    unittest.main()
