# asyncpg names every statement (__asyncpg_stmt_N__): run it through openproxy's transaction
# pooling with more connections than server connections. Prints OK or raises.
import asyncio, sys
import asyncpg

async def worker(port, i):
    conn = await asyncpg.connect(host='127.0.0.1', port=port, user='app', password='app-secret', database='postgres')
    try:
        for k in range(20):
            v = await conn.fetchval('SELECT $1::int * $2::int', i, k)
            assert v == i * k, (v, i, k)
        async with conn.transaction():
            await conn.execute('SELECT pg_sleep(0.01)')
            v = await conn.fetchval('SELECT $1::text', 'in-tx')
            assert v == 'in-tx'
        stmt = await conn.prepare('SELECT $1::int + 1')
        for k in range(5):
            assert await stmt.fetchval(k) == k + 1
    finally:
        await conn.close()

async def main(port):
    await asyncio.gather(*(worker(port, i) for i in range(8)))
    print('OK')

asyncio.run(main(int(sys.argv[1])))
