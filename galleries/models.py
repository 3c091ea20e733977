"""Shareable, time-limited public galleries of an event's results."""
