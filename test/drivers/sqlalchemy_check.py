# SQLAlchemy's asyncio engine over asyncpg through openproxy. Its dialect prepares every statement
# under a name (asyncpg Connection.prepare), so in transaction mode it needs openproxy's
# prepared-statement cache; without it the first statement must fail with openproxy's clear 26000.
# argv: port mode routing(0/1) named(0/1) pool_size who. Prints OK or raises.
import asyncio
from matrix_args import parse_args
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

port, mode, routing, named, pool_size, who = parse_args()
URL = f'postgresql+asyncpg://app:app-secret@127.0.0.1:{port}/postgres'

async def step(coro):
    return await asyncio.wait_for(coro, 30)

async def refused():
    engine = create_async_engine(URL, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as c:
            await step(c.execute(text('SELECT 1')))
        raise AssertionError('a named statement was accepted without the prepared-statement cache')
    except Exception as e:  # SQLAlchemy wraps asyncpg's error
        assert 'prepared_statements_cache_size' in str(e), str(e)
    finally:
        await engine.dispose()

async def main():
    if not named:
        await refused()
        print('OK')
        return
    engine = create_async_engine(URL, pool_size=pool_size if mode == 'session' else 10, max_overflow=0, pool_timeout=30)
    try:
        async def read(i):
            async with engine.connect() as c:
                c = await c.execution_options(postgresql_readonly=True)  # BEGIN READ ONLY: routed as a read
                # The dialect's first-connect queries run in a transaction on the primary. In
                # transaction mode read_your_writes keeps this client's reads there until a replica
                # is known to have replayed past it (one replica_lag_interval, 100 ms here); in
                # session mode that session stays on the primary for good.
                for _ in range(1 if mode == 'session' else 30):
                    rec = (await step(c.execute(text('SELECT pg_is_in_recovery()')))).scalar()
                    await step(c.rollback())
                    if rec == routing: break
                    await asyncio.sleep(0.1)
                assert (await step(c.execute(text('SELECT CAST(:a AS int) * 3'), {'a': i}))).scalar() == i * 3
                rows = (await step(c.execute(text('SELECT g FROM generate_series(1, 20000) g')))).all()
                assert len(rows) == 20000
                return rec
        recs = await step(asyncio.gather(*(read(i) for i in range(30))))
        if routing and mode == 'session':
            assert any(recs), 'no read reached a replica'
        else:
            assert all(r == routing for r in recs), 'reads ran on the wrong kind of server'
        async with engine.connect() as c:
            try:
                await step(c.execute(text('SELECT 1 / CAST(:z AS int)'), {'z': 0}))
                raise AssertionError('division by zero did not fail')
            except Exception as e:
                assert 'division by zero' in str(e), str(e)
            await step(c.rollback())
            assert (await step(c.execute(text('SELECT CAST(:t AS text)'), {'t': 'after-error'}))).scalar() == 'after-error'
        async with engine.connect() as c:
            await step(c.execute(text('INSERT INTO matrix_t (who, v) VALUES (:w, 1)'), {'w': who}))
            await step(c.rollback())
            await step(c.execute(text('INSERT INTO matrix_t (who, v) VALUES (:w, 2)'), {'w': who}))
            await step(c.commit())
            assert (await step(c.execute(text('SELECT count(*) FROM matrix_t WHERE who = :w'), {'w': who}))).scalar() == 1
            await step(c.commit())
    finally:
        await engine.dispose()
    print('OK')

asyncio.run(main())
