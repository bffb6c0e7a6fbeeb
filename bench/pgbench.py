"""The bid transaction's SQL, run by `pgbench` against the benchmark's database: S1's baseline."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bench.stats import percentiles

SCRIPT = """\\set turn random(0, 1)
\\set bidder :b0 + :turn * (:b1 - :b0)
BEGIN;
SELECT COALESCE(current_price, starting_price) AS current_price, seq FROM lots_lot WHERE id = :lot FOR UPDATE \\gset
INSERT INTO bids_bid (lot_id, bidder_id, amount, max_amount, is_proxy, raises_max_only, is_buy_now, idempotency_key, request_hash, void_reason, submitted_amount, created_at) VALUES (:lot, :bidder, :current_price + 0.01, NULL, false, false, false, NULL, '', '', :current_price + 0.01, now());
UPDATE lots_lot SET current_price = COALESCE(current_price, starting_price) + 0.01, high_bidder_id = :bidder, high_max_amount = NULL, bid_count = bid_count + 1, seq = seq + 1, updated_at = now() WHERE id = :lot;
INSERT INTO bids_lotevent (lot_id, seq, type, text, created_at) VALUES (:lot, :seq + 1, 'NEW_BID', '{"type": "NEW_BID", "lot_id": 1, "seq": 1, "bid": {"id": 1, "amount": "1.00", "bidder": "bench1", "created_at": "2026-11-21T07:00:00.000Z", "is_proxy": false}, "lot": {"current_price": "1.00", "min_next_bid": "1.01", "bid_count": 1, "high_bidder": "bench1", "reserve_met": true, "ends_at": "2026-11-21T12:00:00Z"}}', now());
COMMIT;
"""


def available() -> bool:
    return shutil.which("pgbench") is not None


def run(database_url: str, *, lot_id: int, bidders: tuple[int, int], clients: int, seconds: float) -> dict:
    """One pgbench run at `clients` connections for `seconds`: transactions/s and latency percentiles (ms)."""
    url = urlsplit(database_url)
    with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        script = Path(tmp) / "bid.sql"
        script.write_text(SCRIPT)
        command = ["pgbench", "-n", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432)]
        command += ["-U", url.username or "postgres", "-c", str(clients), "-j", str(min(clients, 2))]
        command += ["-T", str(max(1, round(seconds))), "-f", str(script), "-D", f"lot={lot_id}"]
        command += ["-D", f"b0={bidders[0]}", "-D", f"b1={bidders[1]}", "-l", "--log-prefix", f"{tmp}/log"]
        command.append(url.path.lstrip("/"))
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed: {done.stderr[-2000:]}")
        tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout).group(1))
        latencies = []
        for log in Path(tmp).glob("log.*"):
            for line in log.read_text().splitlines():
                latencies.append(int(line.split()[2]) / 1000)
    return {"concurrency": clients, "rate": tps, **percentiles(latencies), "count": len(latencies)}
