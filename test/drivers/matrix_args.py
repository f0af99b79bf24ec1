# Shared by the Python driver checks of the driver matrix: the argv contract and a reader runner.
import sys, threading

def parse_args():
    """argv: port mode routing(0/1) named(0/1) pool_size who."""
    a = sys.argv
    return int(a[1]), a[2], a[3] == '1', a[4] == '1', int(a[5]), a[6]

def run_readers(reader, n, deadline=60):
    """Runs reader(i) for i < n in threads; exits with every error, or if one hangs past the deadline."""
    errors = []
    def guarded(i):
        try:
            reader(i)
        except Exception as e:  # reported below, all of them
            errors.append(f'reader {i}: {e!r}')
    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads: t.start()
    for t in threads: t.join(deadline)
    if any(t.is_alive() for t in threads): raise SystemExit(f'a reader hung for {deadline} s')
    if errors: raise SystemExit('; '.join(errors))
