"""Built-in model plugins of odirkit."""
