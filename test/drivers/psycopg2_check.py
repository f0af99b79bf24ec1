# psycopg2 through openproxy: the simple query protocol with parameters interpolated by libpq's
# client side. argv: port mode routing(0/1) named(0/1) pool_size who. Prints OK or raises.
import sys, threading
import psycopg2, psycopg2.errors

port, mode, routing, named, pool_size, who = int(sys.argv[1]), sys.argv[2], sys.argv[3] == '1', sys.argv[4] == '1', int(sys.argv[5]), sys.argv[6]
ARGS = dict(host='127.0.0.1', port=port, user='app', password='app-secret', dbname='postgres', connect_timeout=20, options='-c statement_timeout=20000')
errors = []

def reader(i):
    try:
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
    except Exception as e:
        errors.append(f'reader {i}: {e!r}')

threads = [threading.Thread(target=reader, args=(i,)) for i in range(pool_size + 4)]
for t in threads: t.start()
for t in threads: t.join(60)
if any(t.is_alive() for t in threads): raise SystemExit('a reader hung for 60 s')
if errors: raise SystemExit('; '.join(errors))

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
