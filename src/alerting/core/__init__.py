"""The correlation core: pure numpy rules from readings and fleet state to alarm decisions."""

from alerting.core.correlator import Correlator

__all__ = ["Correlator"]
