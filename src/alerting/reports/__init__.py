"""Supervision reports (CONTRACT §11): the monthly report and the daily online sample behind it."""
