"""Every connected-components engine gives the partition a plain union-find gives."""
import random

import pytest

from kequn.identity.components import ComponentsError, components
from kequn.identity.edges import contracted_edges


def union_find(edges):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {v: find(v) for v in list(parent)}


def graphs(chain_len=300):
    """Disjoint random, chain (shuffled ids), star, hub-and-spokes and self-loop graphs."""
    rnd = random.Random(7)
    out = []
    out += [(rnd.randrange(400), rnd.randrange(400)) for _ in range(300)]            # random, many small parts
    ids = list(range(10_000, 10_000 + chain_len))
    rnd.shuffle(ids)
    out += list(zip(ids, ids[1:]))                                                    # long chain, ids not in order
    out += [(20_000, 20_000 + i) for i in range(1, 200)]                              # star, centre smallest
    out += [(30_199, 30_000 + i) for i in range(199)]                                 # star, centre largest
    hubs = [40_000, 40_001, 40_002]
    out += [(hubs[i % 3], 41_000 + i) for i in range(300)] + [(41_000, 41_001), (41_002, 41_003)]  # hubs joined
    out += [(50_000, 50_000), (50_001, 50_002), (50_002, 50_001), (50_001, 50_002)]   # self-loop, duplicates
    return out


def result(df):
    return {r["vertex"]: r["component"] for r in df.collect()}


@pytest.fixture(scope="module")
def graph_df(spark):
    edges = graphs()
    return edges, spark.createDataFrame(edges, "src bigint, dst bigint")


@pytest.mark.parametrize("engine", ["scipy", "dataframe", "auto"])
def test_engine_matches_union_find(graph_df, engine):
    edges, df = graph_df
    got = components(df, engine, checkpoint="local")
    assert got.columns == ["vertex", "component"]
    assert dict(got.dtypes) == {"vertex": "bigint", "component": "bigint"}
    assert result(got) == union_find(edges)


def test_graphx_matches_union_find(spark):
    # GraphX's Pregel needs one superstep per hop: a short chain keeps this test quick.
    edges = graphs(chain_len=12)
    got = components(spark.createDataFrame(edges, "src bigint, dst bigint"), "graphx")
    assert result(got) == union_find(edges)


def test_dataframe_engine_reliable_checkpoints(spark):
    edges = [(i, i + 1) for i in range(40)] + [(100, 101)]
    got = components(spark.createDataFrame(edges, "src bigint, dst bigint"), "dataframe", checkpoint="reliable")
    assert result(got) == union_find(edges)


def test_scipy_refuses_graph_over_its_maximum(spark):
    df = spark.createDataFrame([(1, 2), (2, 3), (4, 5)], "src bigint, dst bigint")
    with pytest.raises(ComponentsError, match="local_max_edges"):
        components(df, "scipy", max_edges=2)
    # auto moves to the distributed engine instead.
    assert result(components(df, "auto", local_max_edges=2, checkpoint="local")) == {1: 1, 2: 1, 3: 1, 4: 4, 5: 4}


def test_graphframes_fails_at_once_naming_the_package(spark):
    df = spark.createDataFrame([(1, 2)], "src bigint, dst bigint")
    with pytest.raises(ComponentsError, match=r"io\.graphframes:graphframes-spark4_2\.13:0\.12\.3"):
        components(df, "graphframes")


def test_unknown_engine_rejected(spark):
    with pytest.raises(ValueError, match="unknown"):
        components(spark.createDataFrame([(1, 2)], "src bigint, dst bigint"), "networkx")


def test_contraction_keeps_the_partition(spark):
    # Bipartite record--identifier pairs; identifiers are keyed by token, records by vertex.
    rnd = random.Random(3)
    pairs = [(rnd.randrange(500), f"t{rnd.randrange(300)}") for _ in range(700)]
    pairs += [(1000 + i, "hub") for i in range(50)]
    linked = spark.createDataFrame([(r, "mobile", t) for r, t in pairs],
                                   "record_vertex bigint, id_type string, id_token string")
    got = result(components(contracted_edges(linked), "scipy"))
    # Expected: union-find over the bipartite graph, restricted to records.
    tok = {t: 100_000 + i for i, t in enumerate(sorted({t for _, t in pairs}))}
    full = union_find([(r, tok[t]) for r, t in pairs])
    records = {r for r, _ in pairs}
    groups_full = {}
    for r in records:
        groups_full.setdefault(full[r], set()).add(r)
    groups_got = {}
    for r in records:
        groups_got.setdefault(got.get(r, r), set()).add(r)
    assert sorted(map(sorted, groups_got.values())) == sorted(map(sorted, groups_full.values()))
    # Labels are each group's smallest record.
    assert all(min(g) == label for label, g in groups_got.items())
