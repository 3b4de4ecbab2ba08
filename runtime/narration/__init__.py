"""Narration: scene-change gating, what to say and when, speech, and the threaded pipeline."""
