"""Connected-components engines on synthetic identity graphs.

    .venv/bin/python bench/identity_bench.py --persons 100000 1000000 [--engines scipy,dataframe,graphx]

Each person has 1-4 master records; each record holds 1-4 identifiers drawn from its person's
identifiers (so the records link), 1% of persons share a "hub" identifier with ~8 others (bigger
components, kept below the degree limits as the guard would). Graphs are generated with numpy and
loaded once through Arrow; the figure per engine is ``components(...)`` plus materialising its
result (``noop`` write), on two graph forms:

* ``bipartite``: record -- identifier edges (vertices = records + identifiers);
* ``contracted``: record -- record edges, each identifier linking its records to its smallest
  (one Spark aggregation, timed separately as ``contract``).
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

import numpy as np


def synthetic(persons: int, seed: int = 42):
    """(record, identifier) pairs as two int64 arrays; ids disjoint (identifiers after records)."""
    rng = np.random.default_rng(seed)
    recs_per = rng.integers(1, 5, persons)                     # 1-4 records per person
    ids_per = rng.integers(1, 4, persons)                      # 1-3 identifiers per person
    n_rec = int(recs_per.sum())
    rec_person = np.repeat(np.arange(persons), recs_per)
    id_base = np.concatenate([[0], np.cumsum(ids_per)[:-1]])
    n_ids = int(ids_per.sum())
    # Each record holds 1-4 identifiers of its person (duplicates dropped later).
    k = rng.integers(1, 5, n_rec)
    rec = np.repeat(np.arange(n_rec), k)
    person = rec_person[rec]
    ident = id_base[person] + rng.integers(0, 1 << 30, len(rec)) % ids_per[person]
    # Hubs: 1% of persons, each hub shared by 9 records of different persons.
    n_hubs = max(persons // 100 // 9, 1)
    hub_recs = rng.choice(n_rec, n_hubs * 9, replace=False)
    hub_ids = n_ids + np.repeat(np.arange(n_hubs), 9)
    rec = np.concatenate([rec, hub_recs])
    ident = np.concatenate([ident, hub_ids])
    pairs = np.unique(np.stack([rec, ident + n_rec], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1], n_rec, n_ids + n_hubs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--engines", default="scipy,dataframe,graphx")
    ap.add_argument("--forms", default="bipartite,contracted")
    ap.add_argument("--warehouse", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import pyarrow as pa
    from pyspark.sql import functions as F

    from kequn.identity.components import components
    from kequn.session import build_session

    wh = args.warehouse or tempfile.mkdtemp(prefix="identity_bench_")
    spark = build_session(wh)
    engines = args.engines.split(",")
    rows = []
    for persons in args.persons:
        t0 = time.perf_counter()
        src, dst, n_rec, n_ids = synthetic(persons)
        gen = time.perf_counter() - t0
        pairs = spark.createDataFrame(pa.table({"src": src, "dst": dst})).repartition(4).localCheckpoint(eager=True)
        graphs = {}
        if "bipartite" in args.forms:
            graphs["bipartite"] = (pairs, 0.0)
        if "contracted" in args.forms:
            t0 = time.perf_counter()
            root = pairs.groupBy("dst").agg(F.min("src").alias("root"))
            contracted = (pairs.join(root, "dst").where(F.col("src") != F.col("root"))
                          .select("src", F.col("root").alias("dst")).distinct().localCheckpoint(eager=True))
            graphs["contracted"] = (contracted, time.perf_counter() - t0)
        print(f"\npersons={persons}: records={n_rec} identifiers={n_ids} generated in {gen:.1f} s", flush=True)
        for form, (edges, prep) in graphs.items():
            n_edges = edges.count()
            n_vertices = edges.select("src").union(edges.select("dst")).distinct().count()
            for engine in engines:
                t0 = time.perf_counter()
                out = components(edges, engine, checkpoint="local" if engine == "dataframe" else "reliable")
                out.write.format("noop").mode("overwrite").save()
                secs = time.perf_counter() - t0
                n_comp = out.select("component").distinct().count()
                rows.append(dict(persons=persons, form=form, engine=engine, vertices=n_vertices, edges=n_edges,
                                 components=n_comp, prep=prep, seconds=secs))
                print(f"  {form:10s} {engine:10s} vertices={n_vertices} edges={n_edges} components={n_comp} "
                      f"{secs:.1f} s (+ contract {prep:.1f} s)", flush=True)

    print("\n| persons | form | engine | vertices | edges | components | seconds | edges/s | vs scipy | vs graphx |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        same = {x["engine"]: x["seconds"] for x in rows if x["persons"] == r["persons"] and x["form"] == r["form"]}
        vs = lambda e: f"{r['seconds'] / same[e]:.2f}" if e in same else "-"  # noqa: E731
        print(f"| {r['persons']:,} | {r['form']} | {r['engine']} | {r['vertices']:,} | {r['edges']:,} | "
              f"{r['components']:,} | {r['seconds']:.1f} | {r['edges'] / r['seconds']:,.0f} | {vs('scipy')} | {vs('graphx')} |")
    comp_counts = {(r["persons"], r["form"]): set() for r in rows}
    for r in rows:
        comp_counts[(r["persons"], r["form"])].add(r["components"])
    assert all(len(v) == 1 for v in comp_counts.values()), f"engines disagree: {comp_counts}"
    spark.stop()


if __name__ == "__main__":
    main()
