"""From human labels to training data, with no Django in sight.

The facade: ``build_dataset`` (records in, export and report out), its ``PipelineConfig``
(cleaning, de-duplication, aggregation, splits), ``reexport`` (an export again, e.g. with
prompt truncation) and ``render_data_card``. Readers that turn database rows into
``LabelRecord``s live outside this package (``rlhf.snapshots.readers``); an import-linter contract
keeps Django out of it.
"""
