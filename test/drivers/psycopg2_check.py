# psycopg2 through openproxy: the simple query protocol with parameters interpolated by libpq's
# client side. argv: port mode routing(0/1) named(0/1) pool_size who. Prints OK or raises.
from matrix_args import parse_args, run_readers
import psycopg2, psycopg2.errors

port, mode, routing, named, pool_size, who = parse_args()

ARGS = dict(host='127.0.0.1', port=port, user='app', password='app-secret', dbname='postgres', connect_timeout=20, options='-c statement_timeout=20000')

def reader(i):
    conn = psycopg2.connect(**ARGS)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute('SELECT pg_is_in_recovery()')
    assert cur.fetchone()[0] == routing, 'read ran on the wrong kind of server'
    for k in range(10):
        cur.execute('SELECT %s::int * %s::int', (i, k))
        assert cur.fetchone()[0] == i * k
    cur.execute('SELECT g, md5(g::text) FROM generate_series(1, 20000) g')
    assert len(cur.fetchall()) == 20000
    try:
        cur.execute('SELECT 1 / %s::int', (0,))
        raise AssertionError('division by zero did not fail')
    except psycopg2.errors.DivisionByZero:
        pass
    cur.execute('SELECT 1; SELECT 2')  # two statements in one Query
    assert cur.fetchone()[0] == 2
    conn.close()

run_readers(reader, pool_size + 4)

conn = psycopg2.connect(**ARGS)
cur = conn.cursor()
cur.execute('INSERT INTO matrix_t (who, v) VALUES (%s, 1)', (who,))
conn.rollback()
cur.execute('INSERT INTO matrix_t (who, v) VALUES (%s, 2)', (who,))
conn.commit()
conn.autocommit = True
cur.execute('SELECT count(*) FROM matrix_t WHERE who = %s', (who,))
assert cur.fetchone()[0] == 1
conn.close()
print('OK')
