"""Importing prompts, responses and already-labelled preference pairs from JSONL or CSV.

A file is read and validated whole before anything is written: a bad row refuses the whole
file with its line number and the reason, and nothing is half-imported. Writing happens in
one transaction with content hashes, so importing the same file again creates nothing new.

Kinds of file:
- ``prompts``: JSONL rows ``{"prompt": "text"}`` or ``{"messages": [{role, content}, ...]}``
  (optional ``source``, ``metadata``); CSV with a ``prompt`` column (optional ``system``).
- ``responses``: JSONL ``{"prompt"|"messages", "responses": ["text" | {"text", "model"}],
  "kinds": [...]}``; CSV with ``prompt`` and ``response_1``, ``response_2``... columns.
  Two responses make a pairwise task, three or more a ranking, one a correction task,
  unless ``kinds`` (per row or for the file) says otherwise.
- ``preferences``: labelled pairs in the HH-RLHF shape (``chosen``/``rejected`` dialogues) or
  the TRL shape (``prompt``/``chosen``/``rejected``); each becomes a pairwise task with a
  label by a named external annotator, so it feeds training like any other label.

The steps, one module each: ``uploads`` (what an upload may be, and ``import_file``, the
whole import), ``parsing`` (bytes to records), ``rows`` (validating a record) and
``writing`` (validated rows to prompts, responses, tasks and labels).
"""

from annotation.importers.parsing import (
    IMPORT_KINDS,
    MAX_ERRORS_REPORTED,
    ROW_EXAMPLES,
    detect_format,
    parse_import,
    size_refusal,
)
from annotation.importers.rows import MAX_MESSAGES, MAX_TEXT_CHARS
from annotation.importers.uploads import (
    GZIP_MAX_RATIO,
    declared_length,
    import_file,
    unpack_upload,
    upload_size_check,
)
from annotation.importers.writing import import_rows

__all__ = [
    "GZIP_MAX_RATIO",
    "IMPORT_KINDS",
    "MAX_ERRORS_REPORTED",
    "MAX_MESSAGES",
    "MAX_TEXT_CHARS",
    "ROW_EXAMPLES",
    "declared_length",
    "detect_format",
    "import_file",
    "import_rows",
    "parse_import",
    "size_refusal",
    "unpack_upload",
    "upload_size_check",
]
