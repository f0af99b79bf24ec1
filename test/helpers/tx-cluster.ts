// The cluster and config shared by the transaction-pooling test files: one primary with two
// schemas that tell clients apart (s_a, s_b), a table for rows written inside transactions.

import { after, before } from 'node:test';
import { PgCluster } from '../../testing/pg-cluster';
import { APP_USER, createAppRole } from './db';
import { configFor } from './proxy';

export interface TxCluster {
  readonly cluster: PgCluster;
  /** A config for a transaction-mode pool of `size` server connections, on `port`. */
  tx(size: number, general?: string, extraUser?: string): (port: number) => string;
}

/** Starts the cluster before the file's tests and stops it after them. */
export function transactionCluster(): TxCluster {
  let cluster: PgCluster | undefined;
  before(async () => {
    cluster = await PgCluster.start();
    createAppRole(cluster);
    const schemas = ['s_a', 's_b'].map(
      (s) =>
        `CREATE SCHEMA ${s} AUTHORIZATION ${APP_USER}; CREATE TABLE ${s}.which(v text); ` +
        `INSERT INTO ${s}.which VALUES ('${s.slice(2)}');`,
    );
    cluster.psql(
      cluster.primary,
      `${schemas.join(' ')} GRANT ALL ON ALL TABLES IN SCHEMA s_a, s_b TO ${APP_USER}; ` +
        `CREATE TABLE tx_rows(x int); GRANT ALL ON tx_rows TO ${APP_USER}; ` +
        `GRANT CREATE ON DATABASE postgres TO ${APP_USER}`,
    );
  });
  after(() => cluster?.stop());
  return {
    get cluster() {
      if (!cluster) throw new Error('the cluster starts in before()');
      return cluster;
    },
    tx:
      (size, general = '', extraUser = '') =>
      (port) =>
        configFor(cluster!, port, `connect_timeout = 10000\n${general}`, [
          { pool_mode: 'transaction', pool_size: size, extraUser },
        ]),
  };
}
