#!/usr/bin/env python3
"""The reference for `mediflow bench dedup`: datasketch on the same records and rules.

Reads JSONL records ({"id", "text"}), normalises like mediflow (lowercase, alphanumeric
words, single spaces), exact-deduplicates on the normalised text, and near-deduplicates with
datasketch MinHash(num_perm=128, seed=1) over word 5-shingles (utf-8) and
MinHashLSH(threshold=0.8, num_perm=128), greedily in id order: a record whose LSH query
finds a kept record is a duplicate, else it is
inserted. Writes seconds (signatures + LSH, loading excluded), peak RSS and the duplicate
ids as JSON.

usage: dedup_reference.py RECORDS.jsonl RESULTS.json
"""

import json
import re
import resource
import sys
import time

import datasketch
from datasketch import MinHash, MinHashLSH

NUM_PERM, THRESHOLD, SHINGLE, SEED, CHUNK = 128, 0.8, 5, 1, 10_000
WORD = re.compile(r"[^\W_]+")


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shingles(norm):
    words = norm.split(" ")
    if len(words) <= SHINGLE:
        return [norm.encode("utf-8")]
    return [" ".join(words[i : i + SHINGLE]).encode("utf-8") for i in range(len(words) - SHINGLE + 1)]


def main(records_path, results_path):
    with open(records_path, encoding="utf-8") as f:
        recs = [json.loads(line) for line in f]
    recs.sort(key=lambda r: r["id"])
    rss_before = rss_mb()
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    exact = {}  # hash of the normalised text -> kept index
    kept_ids = []
    dups = []
    n_exact = 0
    for start in range(0, len(recs), CHUNK):
        chunk = recs[start : start + CHUNK]
        norms = [" ".join(WORD.findall(r["text"].lower())) for r in chunk]
        todo = [k for k, n in enumerate(norms) if hash(n) not in exact]
        sigs = dict(zip(todo, MinHash.bulk([shingles(norms[k]) for k in todo], num_perm=NUM_PERM, seed=SEED)))
        for k, (r, n) in enumerate(zip(chunk, norms)):
            if hash(n) in exact:  # also catches exact copies within this chunk
                dups.append(r["id"])
                n_exact += 1
                continue
            m = sigs[k]
            found = lsh.query(m)
            if found:
                dups.append(r["id"])
                continue
            idx = len(kept_ids)
            kept_ids.append(r["id"])
            exact[hash(n)] = idx
            lsh.insert(idx, m)
    seconds = time.perf_counter() - t0
    out = {
        "tool": f"datasketch {datasketch.__version__}",
        "records": len(recs),
        "seconds": seconds,
        "rss_before_mb": round(rss_before),
        "peak_rss_mb": round(rss_mb()),
        "bands": lsh.b,
        "rows": lsh.r,
        "exact_duplicates": n_exact,
        "near_duplicates": len(dups) - n_exact,
        "duplicate_ids": dups,
    }
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"datasketch: {len(recs)} records in {seconds:.1f}s, {len(dups)} duplicates, peak RSS {out['peak_rss_mb']} MB", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:3])
