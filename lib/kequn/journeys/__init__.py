"""Journeys: multi-step contact plans over segments, derived day by day from facts.

Public API::

    run(spark, wh, as_of, config) -> dict[str, int]           # the pipeline stage
    simulate_delivery(spark, wh, as_of, landing, open_rates, seed=0) -> dict[str, int]
    load_journeys(conf_dir=None, segments=None) -> JourneyConfig
"""
from .definitions import FrequencyCap, Journey, JourneyConfig, load_journeys
from .simulate import simulate_delivery
from .stage import ACTIONS, FUNNEL, MEMBERS, STATE, STATS, run

# The stage's tables (kequn.pipeline.tables_written_by): the journey-fed groups' rows of segment_members/_stats too.
WRITES = (STATE, ACTIONS, FUNNEL, MEMBERS, STATS)

__all__ = ["WRITES", "run", "simulate_delivery", "load_journeys", "Journey", "JourneyConfig", "FrequencyCap"]
