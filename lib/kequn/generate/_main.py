"""generate(): persons -> master records -> facts -> landing files, chunk by chunk of persons."""
from __future__ import annotations

import logging
import math
import os
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from kequn.landing import MASTER_SOURCES, SOURCES

from . import _facts as F
from . import _master as M
from ._persons import build_persons
from ._util import DAY, keys, stream
from ._write import Writer

log = logging.getLogger(__name__)

CHUNK_PERSONS = 350_000
MULTIPART_FROM = 5_000     # from this many persons, batches come in several part files
HISTORY_DAYS = 200         # facts backfilled before the first batch when the window is short


def _chunks(persons: int) -> list[tuple[int, int]]:
    n = 1 if persons < MULTIPART_FROM else max(2, math.ceil(persons / CHUNK_PERSONS))
    bounds = np.linspace(0, persons, n + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _master_table(source: str, cols: dict, t0: int) -> pa.Table:
    out = {}
    for c in SOURCES[source].columns:
        v = cols[c.name]
        if c.type == "timestamp":
            out[c.name] = pa.array(np.asarray(v, np.int64) + t0, pa.timestamp("s"))
        elif c.type == "date":
            out[c.name] = pa.array(np.asarray(v, np.int64).astype(np.int32), pa.date32())
        else:
            out[c.name] = pa.array(v, pa.string())
    return pa.table(out)


def _empty(source: str) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in SOURCES[source].column_names})


def _by_batch(dt: np.ndarray):
    """Yield (day, positions) groups of a batch-index array."""
    order = np.argsort(dt, kind="stable")
    sd = dt[order]
    if not len(sd):
        return
    cuts = np.flatnonzero(np.r_[True, sd[1:] != sd[:-1], True])
    for a, b in zip(cuts[:-1], cuts[1:]):
        yield int(sd[a]), order[a:b]


def generate(out: str, persons: int, days: int, seed: int = 42, end: str = "2026-11-25",
             holding_every: int = 1, activity: float = 1.0) -> dict:
    """Write a landing folder for `persons` people and `days` daily batches ending on `end`.

    Layout `<out>/<source>/dt=YYYY-MM-DD/part-NNNNN.csv` for the nine sources of the landing
    contract, plus ground truth `<out>/_truth/records.csv` (source, source_key, person_id) for every
    master-data record. Deterministic for its arguments. Returns row counts per source
    plus `truth_records`, `persons` and `bytes` (on disk). Existing `<out>/<source>` and `<out>/_truth`
    folders are replaced; nothing else in `out` is touched.

    Density, for benchmarks that need many persons on one disk (the defaults give some 270 landing
    rows a person over 90 days, 60 % of them holding snapshots): ``holding_every`` delivers the
    holding snapshot every that many days, counted back from `end` (the contract's snapshot is full
    on each day it is delivered; the other days' holding batches are empty), and ``activity`` scales
    the everyday transactions and events. Planted signals (need spending and searches, product
    purchases, dormant accounts' interest) are left as they are, so the need and lifecycle tags keep
    their members. The defaults reproduce the data of earlier versions exactly.
    """
    if persons < 1 or days < 1:
        raise ValueError("persons and days must be at least 1")
    if holding_every < 1 or not activity > 0:
        raise ValueError(f"holding_every must be at least 1 and activity above 0 "
                         f"(got {holding_every!r}, {activity!r})")
    started = time.monotonic()
    end_d = np.datetime64(end, "D")
    first = end_d - np.timedelta64(days - 1, "D")
    t0_days = int(first.astype(np.int64))
    t0 = t0_days * DAY
    history = HISTORY_DAYS if days < 180 else 20
    t_start, t_end = -history * DAY, days * DAY
    os.makedirs(out, exist_ok=True)
    for s in list(SOURCES) + ["_truth"]:
        if os.path.isdir(os.path.join(out, s)):
            shutil.rmtree(os.path.join(out, s))

    P_all = build_persons(persons, seed, end_d, t_start, t_end, days)
    writer = Writer(out, first, days, seed)
    counters = {s: 0 for s in ("transaction", "event", "touch")}
    truth_n = 0
    os.makedirs(os.path.join(out, "_truth"), exist_ok=True)
    truth_path = os.path.join(out, "_truth", "records.csv")
    with pa.OSFile(truth_path, "wb") as truth:
        truth.write(b"source,source_key,person_id\n")
        for chunk, (lo, hi) in enumerate(_chunks(persons)):
            P = P_all.slice(lo, hi)
            n = len(P)
            core = M.finish(M.build_core(P, seed, chunk, days), t0_days)
            cust_of_person = np.full(n, None, dtype=object)
            cust_of_person[core.person] = core.cols["cust_no"]
            card = M.finish(M.build_card(P, seed, chunk, days), t0_days)
            app = M.finish(M.build_app(P, seed, chunk, days, cust_of_person), t0_days)
            wx = M.finish(M.build_wechat(P, seed, chunk, days), t0_days)
            recs = {"core_customer": core, "card_account": card, "app_user": app, "wechat_user": wx}
            key_col = {s: SOURCES[s].key[0] for s in MASTER_SOURCES}

            # links for facts (state of the first delivery)
            offsets, key_arrays, off = {}, [], 0
            for s in F.MASTER_ORDER:
                offsets[s] = off
                key_arrays.append(pa.array(recs[s].cols[key_col[s]], pa.string()))
                off += recs[s].n
            per = {}
            for s, r in (("core", core), ("card", card), ("app", app)):
                a = np.full(n, -1, np.int64)
                a[r.person] = np.arange(r.n)
                per[s] = a
            oa = np.full(n, -1, np.int64)
            mp = np.full(n, -1, np.int64)
            wapp = wx.extra["app"]
            oa[wx.person[wapp == 0]] = np.flatnonzero(wapp == 0)
            mp[wx.person[wapp == 1]] = np.flatnonzero(wapp == 1)
            L = F.Links(core=per["core"], card=per["card"], app=per["app"], oa=oa, mp=mp,
                        core_create=core.create_t, card_create=card.create_t, app_create=app.create_t,
                        wx_create=wx.create_t, master_keys=pa.concat_arrays(key_arrays), offsets=offsets,
                        sms_ok={s: recs[s].mobile_ok.copy() for s in F.MASTER_ORDER},
                        device_clean=pa.array(app.extra["device_clean"].copy(), pa.string()))

            # ground truth
            for s in F.MASTER_ORDER:
                r = recs[s]
                tt = pa.table({"source": pa.array(np.full(r.n, s, dtype=object), pa.string()),
                               "source_key": key_arrays[F.MASTER_ORDER.index(s)],
                               "person_id": keys("P", P.pid[r.person], 9)})
                pacsv.write_csv(tt, truth, pacsv.WriteOptions(include_header=False))
                truth_n += r.n

            # master data: first delivery, then daily re-deliveries
            for s in F.MASTER_ORDER:
                for d, cols in M.daily_updates(recs[s], P, seed, chunk, days).items():
                    writer.write(s, d, chunk, _master_table(s, cols, t0))

            # facts
            tx = F.transactions(P, L, seed, chunk, t_start, t_end, days, activity)
            base = counters["transaction"]
            for d, pos in _by_batch(tx["dt"]):
                writer.write("transaction", d, chunk, F.render_transactions(tx["cols"], tx["rows"][pos], base, L, t0))
            counters["transaction"] += len(tx["cols"]["t"])
            del tx

            ev = F.events(P, L, seed, chunk, t_start, t_end, days, activity)
            base = counters["event"]
            for d, pos in _by_batch(ev["dt"]):
                writer.write("event", d, chunk, F.render_events(ev["cols"], ev["rows"][pos], base, L, t0))
            counters["event"] += len(ev["cols"]["t"])
            del ev

            tc = F.touches(P, L, seed, chunk, t_start, t_end, days)
            base = counters["touch"]
            for d, pos in _by_batch(tc["dt"]):
                writer.write("touch", d, chunk,
                             F.render_touches(tc["cols"], tc["rows"][pos], tc["show"][pos], base, L, t0))
            counters["touch"] += len(tc["cols"]["sent"])
            del tc

            cs = F.consents(L, {s: recs[s].create_t for s in F.MASTER_ORDER}, seed, chunk, t_end, days)
            for d, pos in _by_batch(cs["dt"]):
                writer.write("consent", d, chunk, F.render_consents(cs["cols"], cs["rows"][pos], L, t0))
            del cs

            h = F.holdings_base(P, core.person, seed, chunk)
            cday = core.create_day
            for d in range(days):
                if (days - 1 - d) % holding_every:
                    continue
                rng = stream(seed, "holding-day", chunk, d)
                writer.write("holding", d, chunk, F.render_holdings_day(h, d, cday, rng, L, t0_days))
            log.info("generate: chunk %d (%d persons) done after %.1f s", chunk, n, time.monotonic() - started)

    # every source has every batch, even when nothing happened that day
    for s in SOURCES:
        for d in range(days):
            if not writer.written(s, d):
                writer.write(s, d, 0, _empty(s), force=True)
    summary = dict(writer.rows)
    summary["truth_records"] = truth_n
    summary["persons"] = persons
    summary["bytes"] = writer.bytes + os.path.getsize(truth_path)
    log.info("generate: %s in %.1f s", summary, time.monotonic() - started)
    return summary
