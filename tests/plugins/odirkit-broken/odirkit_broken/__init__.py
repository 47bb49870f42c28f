"""A plugin that fails on import, as a plugin with a missing dependency would."""

raise ImportError("odirkit_broken needs the package 'nonexistent_dependency'")
