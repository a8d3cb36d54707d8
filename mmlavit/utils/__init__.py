"""Checkpoint loading without running code from the file (:mod:`mmlavit.utils.checkpoint`)."""
