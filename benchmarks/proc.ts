// What /proc says about a pooler process during a benchmark run, summed over its threads.

import { readFileSync, readdirSync } from 'node:fs';

/** Voluntary and involuntary context switches of every thread of `pid` so far ([NaN, NaN] if unknown). */
export function contextSwitches(pid: number | undefined): [number, number] {
  if (!pid) return [NaN, NaN];
  let voluntary = 0;
  let involuntary = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    }
  } catch {
    return [NaN, NaN];
  }
  return [voluntary, involuntary];
}
