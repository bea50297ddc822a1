"""Why: the crash and multi-process tests need a real separate process that appends with several
threads and reports each index only after its append has returned (i.e. is durable).

Usage: python appender.py DB_URL PREFIX KEY_FILE ORIGIN THREADS PER_THREAD
Prints "<index> <leaf hash hex>" per returned append, flushed at once.
"""

from __future__ import annotations

import sys
import threading

from sqlalchemy import create_engine

from gateway.audit import AuditLog, load_signer


def main(argv: list[str]) -> None:
    url, prefix, key_file, origin, threads, per_thread = argv
    engine = create_engine(url)
    log = AuditLog(engine, load_signer(key_file, origin), origin=origin, table_prefix=prefix,
                   checkpoint_every=64, checkpoint_interval_ms=50)
    log.create_tables()
    out = threading.Lock()

    def work(t: int) -> None:
        for i in range(int(per_thread)):
            result = log.append({"kind": "decision", "tenant": f"p{t}", "seq": i, "decision": "allow"})
            with out:
                sys.stdout.write(f"{result.index} {result.leaf_hash}\n")
                sys.stdout.flush()

    workers = [threading.Thread(target=work, args=(t,)) for t in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.close()


if __name__ == "__main__":
    main(sys.argv[1:])
