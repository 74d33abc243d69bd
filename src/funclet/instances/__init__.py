"""Instances: lifecycle state, pools per function version, reclaiming idle ones."""
