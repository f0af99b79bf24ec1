# asyncpg through openproxy. asyncpg describes every statement before it binds it (Parse/Describe
# then Flush, Bind/Execute/Sync after the answer) and, with its statement cache on, names them all.
# argv: port mode routing(0/1) named(0/1) pool_size who. Prints OK or raises.
import asyncio
from matrix_args import parse_args
import asyncpg

port, mode, routing, named, pool_size, who = parse_args()
DSN = dict(host='127.0.0.1', port=port, user='app', password='app-secret', database='postgres')
# Without openproxy's prepared-statement cache in transaction mode: asyncpg as PgBouncer users run it.
OPTS = {} if named else {'statement_cache_size': 0}

async def step(coro):
    return await asyncio.wait_for(coro, 20)

async def reader(i):
    conn = await step(asyncpg.connect(**DSN, **OPTS))
    try:
        assert await step(conn.fetchval('SELECT pg_is_in_recovery()')) == routing, 'read ran on the wrong kind of server'
        for k in range(10):
            assert await step(conn.fetchval('SELECT $1::int * $2::int', i, k)) == i * k
        rows = await step(conn.fetch('SELECT g, md5(g::text) AS h FROM generate_series(1, $1::int) g', 20000))
        assert len(rows) == 20000 and rows[-1]['g'] == 20000
        try:
            await step(conn.fetchval('SELECT 1 / $1::int', 0))
            raise AssertionError('division by zero did not fail')
        except asyncpg.DivisionByZeroError:
            pass
        assert await step(conn.fetchval('SELECT $1::text', 'after-error')) == 'after-error'
        if named:
            stmt = await step(conn.prepare('SELECT $1::int + 1'))
            for k in range(5):
                assert await step(stmt.fetchval(k)) == k + 1
    finally:
        await conn.close()

async def writer():
    conn = await step(asyncpg.connect(**DSN, **OPTS))
    try:
        tr = conn.transaction()
        await step(tr.start())
        await step(conn.execute('INSERT INTO matrix_t (who, v) VALUES ($1, 1)', who))
        await step(tr.rollback())
        await step(conn.execute('INSERT INTO matrix_t (who, v) VALUES ($1, 2)', who))
        # Reads its own committed write, wherever the read is routed.
        assert await step(conn.fetchval('SELECT count(*) FROM matrix_t WHERE who = $1', who)) == 1
        assert await step(conn.fetchval('SELECT sum(v) FROM matrix_t WHERE who = $1', who)) == 2
    finally:
        await conn.close()

async def pooled():
    # A pool of 50 in transaction mode; a session pooler serves at most pool_size sessions at once.
    size = 50 if mode == 'transaction' else pool_size
    pool = await step(asyncpg.create_pool(**DSN, **OPTS, min_size=min(size, 10), max_size=size))
    try:
        async def task(i):
            assert await pool.fetchval('SELECT $1::int + 1', i) == i + 1
        await step(asyncio.gather(*(task(i) for i in range(200))))
    finally:
        await step(pool.close())

async def main():
    await asyncio.gather(*(reader(i) for i in range(pool_size + 4)))
    await writer()
    await pooled()
    print('OK')

asyncio.run(main())
