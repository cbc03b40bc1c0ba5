"""Label quality: agreement, gold, position bias, adjudication and aggregation.

``metrics`` and ``aggregation`` are framework-free (numpy and scipy only; an import-linter
contract keeps them so); the Django side reads labels, keeps the caches and serves the pages.
"""
