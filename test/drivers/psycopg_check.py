# psycopg 3 with prepare_threshold=0: every statement is prepared server-side (named _pg3_N).
import sys, threading
import psycopg

port = int(sys.argv[1])
errors = []

def worker(i):
    try:
        with psycopg.connect(host='127.0.0.1', port=port, user='app', password='app-secret', dbname='postgres', prepare_threshold=0) as conn:
            for k in range(20):
                v = conn.execute('SELECT %s::int * %s::int', (i, k)).fetchone()[0]
                assert v == i * k, (v, i, k)
            with conn.transaction():
                assert conn.execute('SELECT %s::text', ('tx',)).fetchone()[0] == 'tx'
    except Exception as e:  # reported below
        errors.append(repr(e))

threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    raise SystemExit('; '.join(errors))

# More distinct statements than psycopg's own cache (prepared_max = 100): it evicts with SQL
# DEALLOCATE <name>, a name that only exists in openproxy's mapping.
with psycopg.connect(host='127.0.0.1', port=port, user='app', password='app-secret', dbname='postgres', prepare_threshold=0) as conn:
    for k in range(130):
        assert conn.execute(f'SELECT %s::int + {k}', (1,)).fetchone()[0] == 1 + k
    assert conn.execute('SELECT %s::int', (5,)).fetchone()[0] == 5
print('OK')
