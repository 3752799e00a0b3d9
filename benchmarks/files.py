"""Benchmark: a 100,000-row buf_users file into PostgreSQL with `bufsync import`, against a bare COPY of the same file.

    python benchmarks/files.py [--rows 100000] [--rounds 3]

The file is what Russian Excel saves: cp1251, ';', CRLF, Russian headings (Код;Фамилия;Имя;...). Prints, min and
median of --rounds, each round on an emptied table:
- `bufsync import users FILE` (upsert into an empty table): seconds, rows/s, peak RSS; the file is clean, so it
  is taken whole (files/columnar.py, pyarrow);
- the same import row by row (import_file(fast=False): what a file with a bad row, or before the fast path, costs);
- the same file again (nothing changed: every row checked, none written);
- `--mode replace` of the file with 1% of the rows changed and 1% left out (--allow-removals);
- the baseline, in the same run: `COPY buf_users (...) FROM STDIN (FORMAT csv, HEADER, DELIMITER ';', ENCODING
  'WIN1251')` of the same bytes, with no check at all; and the ratio import / COPY (goal: within 2x), with the
  goal of 50,000 rows/s.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import reconcile as _reconcile

COLUMNS = ["external_id", "last_name", "first_name", "middle_name", "username", "email", "phone", "snils", "status"]
HEADINGS = ["Код", "Фамилия", "Имя", "Отчество", "Логин", "Почта", "Телефон", "СНИЛС", "Статус"]


def write_file(path: Path, rows: int, changed: int = 0, left_out: int = 0) -> None:
    lines = [";".join(HEADINGS)]
    for n in range(left_out, rows):
        last = "Изменённая" if n < left_out + changed else "Иванова"
        lines.append(f"P{n:07d};{last};Мария;Петровна;user{n:07d};user{n:07d}@college.example;+7 900 {n:07d};"
                     f"{n % 1000:03d}-{n % 997:03d}-{n % 991:03d} {n % 97:02d};active")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1251"))


def bare_copy(url: str, path: Path) -> float:
    """The baseline: the file's bytes straight into the table, nothing checked."""
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("TRUNCATE buf_users")
        raw.commit()
        started = time.perf_counter()
        cursor.copy_expert(f"COPY buf_users ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv, HEADER, "
                           "DELIMITER ';', ENCODING 'WIN1251')", io.BytesIO(path.read_bytes()))
        raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()
        engine.dispose()


def empty(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE buf_users, buf_batches"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from bufsync import migrations
    from bufsync.config import load_settings
    from bufsync.files.importing import import_file
    from bufsync.mapping import load_mappings
    url = _reconcile.fresh_database()
    try:
        loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url})
        migrations.upgrade(loaded, load_mappings(loaded.mappings_dir))
        with tempfile.TemporaryDirectory() as tmp:
            path, changed = Path(tmp) / "users.csv", Path(tmp) / "users-next.csv"
            write_file(path, args.rows)
            write_file(changed, args.rows, changed=args.rows // 100, left_out=args.rows // 100)
            first, by_row, again, replace, copy = [], [], [], [], []
            for _ in range(args.rounds):
                empty(url)
                t0 = time.perf_counter()
                report = import_file(loaded, "users", path, fast=False)
                by_row.append(time.perf_counter() - t0)
                assert report.outcome == "ok" and report.counts["inserted"] == args.rows, report.render()
                empty(url)
                t0 = time.perf_counter()
                report = import_file(loaded, "users", path)
                first.append(time.perf_counter() - t0)
                assert report.outcome == "ok" and report.counts["inserted"] == args.rows, report.render()
                t0 = time.perf_counter()
                report = import_file(loaded, "users", path)
                again.append(time.perf_counter() - t0)
                assert report.counts["unchanged"] == args.rows, report.render()
                t0 = time.perf_counter()
                report = import_file(loaded, "users", changed, mode="replace", allow_removals=args.rows // 100)
                replace.append(time.perf_counter() - t0)
                assert report.counts["deleted"] == args.rows // 100, report.render()
                copy.append(bare_copy(url, path))
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            def line(name: str, seconds: list[float]) -> str:
                best, median = min(seconds), statistics.median(seconds)
                return (f"  {name:<34} min {best:6.2f} s  median {median:6.2f} s  "
                        f"{args.rows / median:9,.0f} rows/s")
            print(f"{args.rows:,} rows of buf_users from a cp1251 ';' CSV, PostgreSQL, {args.rounds} rounds:")
            print(line("import (empty table)", first))
            print(line("import row by row (fast=False)", by_row))
            print(line("import again (nothing changed)", again))
            print(line("import --mode replace (1% changed, 1% gone)", replace))
            print(line("bare COPY of the same file", copy))
            ratio = statistics.median(first) / statistics.median(copy)
            rate = args.rows / statistics.median(first)
            print(f"  import / bare COPY: {ratio:.2f}x (goal <= 2x); import {rate:,.0f} rows/s (goal >= 50,000); "
                  f"peak RSS {peak:.0f} MB")
            print(f"  row by row / bare COPY: {statistics.median(by_row) / statistics.median(copy):.2f}x")
    finally:
        _reconcile.drop_database(url)


if __name__ == "__main__":
    main()
