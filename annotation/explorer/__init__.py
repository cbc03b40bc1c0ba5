"""The data explorer: every task of a project with its labels, filtered, paged, opened,
changed in bulk and exported (``selectors`` reads, ``services`` writes, ``api`` serves)."""
