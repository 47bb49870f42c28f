"""Built-in dataset plugins of odirkit."""
