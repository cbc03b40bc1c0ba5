"""Public data formats (HH-RLHF, TRL conversational rows), as plain functions over dicts.

The lowest layer: no Django, no app. ``annotation`` imports it to read uploaded files and
``rlhf.training`` to read exports, so neither needs the other.
"""
