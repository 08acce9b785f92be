"""Notification channels: one small adapter per provider behind `base.Channel`."""
