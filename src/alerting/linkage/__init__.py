"""Linkage (联动, CONTRACT §10): policy (pure), store, runner and routes."""
