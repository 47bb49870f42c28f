"""Built-in augmenter plugins of odirkit."""
