# psycopg 3 through openproxy: prepare_threshold=0 (every statement named _pg3_N) where openproxy
# can keep named statements, never prepared otherwise; pipeline mode (Flush requests inside the
# pipeline, one Sync at its end). argv: port mode routing(0/1) named(0/1) pool_size who.
from matrix_args import parse_args, run_readers
import psycopg

port, mode, routing, named, pool_size, who = parse_args()

ARGS = dict(host='127.0.0.1', port=port, user='app', password='app-secret', dbname='postgres', connect_timeout=20,
            prepare_threshold=0 if named else None, options='-c statement_timeout=20000', autocommit=True)

def reader(i):
    with psycopg.connect(**ARGS) as conn:
        assert conn.execute('SELECT pg_is_in_recovery()').fetchone()[0] == routing, 'read ran on the wrong kind of server'
        for k in range(10):
            assert conn.execute('SELECT %s::int * %s::int', (i, k)).fetchone()[0] == i * k
        rows = conn.execute('SELECT g, md5(g::text) FROM generate_series(1, %s::int) g', (20000,)).fetchall()
        assert len(rows) == 20000 and rows[-1][0] == 20000
        try:
            conn.execute('SELECT 1 / %s::int', (0,))
            raise AssertionError('division by zero did not fail')
        except psycopg.errors.DivisionByZero:
            pass
        with conn.pipeline():
            curs = [conn.execute('SELECT %s::int + 1', (k,)) for k in range(5)]
        assert [c.fetchone()[0] for c in curs] == [1, 2, 3, 4, 5]

run_readers(reader, pool_size + 4)

with psycopg.connect(**{**ARGS, 'autocommit': False}) as conn:
    conn.execute('INSERT INTO matrix_t (who, v) VALUES (%s, 1)', (who,))
    conn.rollback()
    # A pipeline that writes and then reads back its own write.
    with conn.pipeline():
        conn.execute('INSERT INTO matrix_t (who, v) VALUES (%s, 2)', (who,))
        cur = conn.execute('SELECT count(*) FROM matrix_t WHERE who = %s', (who,))
    assert cur.fetchone()[0] == 1
    conn.commit()
    # More distinct statements than psycopg's own cache (prepared_max = 100): it evicts with SQL
    # DEALLOCATE <name>, a name that exists only in openproxy's mapping.
    for k in range(130):
        assert conn.execute(f'SELECT %s::int + {k}', (1,)).fetchone()[0] == 1 + k
    conn.commit()
with psycopg.connect(**ARGS) as conn:
    assert conn.execute('SELECT count(*) FROM matrix_t WHERE who = %s', (who,)).fetchone()[0] == 1
    # The same autocommit session writes after reading (with routing: it started on a replica).
    conn.execute('INSERT INTO matrix_t (who, v) VALUES (%s, 3)', (who + '-rw',))
    assert conn.execute('SELECT count(*) FROM matrix_t WHERE who = %s', (who + '-rw',)).fetchone()[0] == 1
print('OK')
