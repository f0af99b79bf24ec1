// The capacity model in RESULTS.md, from one `npm run bench`: each pooler's ceiling in transactions
// per second per core (1 / CPU per transaction) and what openproxy's measured 1 → N worker scaling
// predicts for bigger machines next to PgBouncer's single-thread ceiling.

export interface CapacityRow {
  /** "workload | protocol | clients". */
  row: string;
  /** µs of CPU per transaction: openproxy with N workers, with 1, PgBouncer. */
  op: number;
  op1: number;
  pb: number;
}

const k = (n: number) => (Number.isFinite(n) ? `${(n / 1000).toFixed(1)}k` : 'n/a');

/** The section's markdown. `workers`: openproxy's worker count in the run (the cores of this machine). */
export function capacityModel(rows: CapacityRow[], workers: number): string {
  const lines = rows.map(({ row, op, op1, pb }) => {
    // Cost growth per doubling of workers, as measured from 1 to `workers` (1 = none).
    const growth = workers > 1 && op1 > 0 ? (op / op1) ** (1 / Math.log2(workers)) : 1;
    const predict = (cores: number) => {
      const linear = (cores * 1e6) / op;
      const degraded = (cores * 1e6) / (op * Math.max(1, growth) ** Math.log2(cores / workers));
      return `${k(degraded)} – ${k(linear)}`;
    };
    const pbCeiling = 1e6 / pb;
    const toMatch = Number.isFinite(pbCeiling) ? Math.ceil((pbCeiling * op) / 1e6) : NaN;
    return (
      `| ${row} | ${k(pbCeiling)} | ${k(1e6 / op1)} | ${k(1e6 / op)} | ${growth.toFixed(2)} | ` +
      `${predict(8)} | ${predict(32)} | ${Number.isFinite(toMatch) ? toMatch : 'n/a'} |`
    );
  });
  return [
    'From the CPU per transaction of the table at the top (same run). A pooler that spends c µs of CPU per ' +
      'transaction can carry at most 10⁶ / c transactions per second on one core; PgBouncer is one thread, so ' +
      'that is its ceiling on any machine. openproxy runs one worker per core: its ceiling on n cores is ' +
      `n × 10⁶ / c, where c is its CPU per transaction with ${workers} workers. The model's assumptions:`,
    '',
    '- PostgreSQL and the clients are elsewhere (the ceilings are the pooler alone), and the network is not the limit.',
    `- The upper figure keeps c as measured with ${workers} workers (linear scaling). The lower one assumes the ` +
      `growth of c per doubling of workers measured here from 1 to ${workers} workers ("growth") goes on for ` +
      'every further doubling. Growth above 1 comes from more threads waking per transaction and from sharing ' +
      'this machine with pgbench and PostgreSQL, so the lower figure is pessimistic.',
    `- Only 1 and ${workers} workers were measured (this machine has ${workers} cores): 8 and 32 cores are an ` +
      'extrapolation, not a measurement.',
    '',
    `| workload | protocol | clients | PgBouncer ceiling, tx/s | openproxy 1 worker, tx/s per core | ` +
      `openproxy ${workers} workers, tx/s per core | growth of c per doubling | openproxy 8 cores, tx/s | ` +
      'openproxy 32 cores, tx/s | cores openproxy needs to match PgBouncer |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...lines,
    '',
  ].join('\n');
}
